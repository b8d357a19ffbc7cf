"""The first state: turn whichever entry point started the execution into one wave request.

- a request (console, CLI, `StartExecution`);
- a custom EventBridge event, detail-type "Cutover Requested", whose detail is a request;
- MGN's "MGN Source Server Launch Result" event for a cutover someone launched in the MGN
  console: one server, its placement read from the source server's tags.

A request (or a custom event's detail) may name an MGN wave or application instead of listing
servers: its servers come from MGN, each placed by its own tags.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline import aws, config, cutover, mgn_waves
from pipeline.errors import RequestInvalid, TargetNotAllowed
from pipeline.request import (
    WAVE_NAME,
    TargetDefaults,
    WaveRequest,
    parse_envelope,
    parse_mgn_launch,
    parse_mgn_request,
    parse_request,
    parse_target,
    server_source,
)

CUSTOM_SOURCE = "mgn-cutover"
CUSTOM_DETAIL_TYPE = "Cutover Requested"
MGN_DETAIL_TYPE = "MGN Source Server Launch Result"
CUTOVER_LAUNCHED = "CUTOVER_LAUNCH_SUCCEEDED"

# The tag schema on MGN source servers, for cutovers launched from the MGN console.
TAG_PREFIX = "mgn-cutover:"
PLACEMENT_TAGS = {
    "target-account": "accountId",
    "subnet": "subnetId",
    "security-groups": "securityGroupIds",
    "instance-type": "instanceType",
    "private-ip": "privateIpAddress",
    "instance-profile": "instanceProfile",
    "target-key": "kmsKeyId",
}
REQUIRED_TAGS = ("target-account", "subnet", "security-groups")
# What a request naming an MGN wave or application has, and a request listing servers has not.
MGN_FIELDS = ("mgnWave", "mgnApplication", "targetDefaults")


def normalize(event: Any, execution: str) -> dict:
    """The wave request as the rest of the state machine reads it."""
    request = parse_request(_servers_listed(_request_of(event)))
    # The same check for listed servers and for servers read from MGN: their tags name the account.
    _check_allowlist(request)
    wave = request.model_dump(by_alias=True)
    wave["execution"] = execution
    if wave["options"]["agentConfigParameter"] is None:
        wave["options"]["agentConfigParameter"] = config.default_agent_config_parameter()
    return wave


def _request_of(event: Any) -> Any:
    if not isinstance(event, dict) or "detail-type" not in event:
        return event
    detail_type, source = event.get("detail-type"), event.get("source")
    if detail_type == CUSTOM_DETAIL_TYPE and source == CUSTOM_SOURCE:
        parse_envelope(event)
        return event.get("detail")
    if detail_type == MGN_DETAIL_TYPE and source == "aws.mgn":
        return _request_from_mgn_event(event)
    raise RequestInvalid("detail-type", f"events of type {detail_type!r} from {source!r} do not start a cutover")


def _request_from_mgn_event(event: dict) -> dict:
    detail = event.get("detail") or {}
    if detail.get("state") != CUTOVER_LAUNCHED:
        raise RequestInvalid("detail.state", f"must be {CUTOVER_LAUNCHED}, not {detail.get('state')!r}")
    resources = event.get("resources") or []
    if not resources or "/" not in str(resources[0]):
        raise RequestInvalid("resources[0]", "must be the ARN of the source server")
    # The whole event is checked before MGN is asked about the server it names.
    server_id, job_id = parse_mgn_launch(event)
    server = cutover.describe_source_server(server_id)
    return {
        "wave": f"mgn-{server_id}",
        "servers": [
            {"sourceServerId": server_id, "target": placement_from_tags(server_id, server), "launchJobId": job_id}
        ],
    }


def placement_from_tags(server_id: str, server: dict, required: tuple[str, ...] = REQUIRED_TAGS) -> dict:
    tags = server.get("tags") or aws.client("mgn").list_tags_for_resource(resourceArn=server["arn"]).get("tags", {})
    placement: dict[str, Any] = {}
    for tag, field in PLACEMENT_TAGS.items():
        value = tags.get(TAG_PREFIX + tag)
        if value:
            placement[field] = value.split() if field == "securityGroupIds" else value
    for tag in required:
        if not (tags.get(TAG_PREFIX + tag) or "").strip():
            raise RequestInvalid(f"tags.{TAG_PREFIX}{tag}",
                                 f"source server {server_id} has no such tag, or an empty one")
    return placement


def _servers_listed(payload: Any) -> Any:
    """The request with its servers listed: read from MGN when it names an MGN wave or application."""
    if server_source(payload) == "servers":
        return payload
    # The whole request is checked before MGN is asked about the wave or application it names.
    request = parse_mgn_request(payload)
    selection = mgn_waves.select(request)
    servers = [
        {"sourceServerId": server["sourceServerID"], "target": _wave_placement(server, request.target_defaults)}
        for server in selection.servers
    ]
    listed = {key: value for key, value in payload.items() if key not in MGN_FIELDS}
    # Unnamed, the wave is called after MGN's wave or application (its id when the name would not fit).
    listed.setdefault("wave", selection.name if re.fullmatch(WAVE_NAME, selection.name) else selection.id)
    return {**listed, "servers": servers}


def _wave_placement(server: dict, defaults: TargetDefaults) -> dict:
    """A server's target: its own tags, then the request's targetDefaults for the fields its tags leave out."""
    server_id = server["sourceServerID"]
    given = defaults.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
    required = tuple(tag for tag in REQUIRED_TAGS if not (tag == "security-groups" and "securityGroupIds" in given))
    tagged = placement_from_tags(server_id, server, required)
    placement = {**given, **tagged}
    try:
        parse_target(placement)
    except RequestInvalid as err:
        field = re.split(r"[.\[]", err.field, maxsplit=1)[0]
        if field in given and field not in tagged:
            raise RequestInvalid(f"targetDefaults.{field}", f"source server {server_id}: {err.reason}") from None
        tag = next((tag for tag, name in PLACEMENT_TAGS.items() if name == field), field)
        value = placement.get(field, "")
        shown = " ".join(value) if isinstance(value, list) else str(value)
        raise RequestInvalid(f"tags.{TAG_PREFIX}{tag}",
                             f"source server {server_id} has {shown[:64]!r}: {err.reason}") from None
    return placement


def _check_allowlist(request: WaveRequest) -> None:
    allowed = config.target_account_allowlist()
    for server in request.servers:
        if server.target.account_id not in allowed:
            raise TargetNotAllowed(server.target.account_id)
