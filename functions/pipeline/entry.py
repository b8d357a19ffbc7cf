"""The first state: turn whichever entry point started the execution into one wave request.

- a request (console, CLI, `StartExecution`);
- a custom EventBridge event, detail-type "Cutover Requested", whose detail is a request;
- MGN's "MGN Source Server Launch Result" event for a cutover someone launched in the MGN
  console: one server, its placement read from the source server's tags.
"""

from __future__ import annotations

from typing import Any

from pipeline import aws, config, cutover
from pipeline.errors import RequestInvalid, TargetNotAllowed
from pipeline.request import WaveRequest, parse_envelope, parse_mgn_launch, parse_request

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


def normalize(event: Any, execution: str) -> dict:
    """The wave request as the rest of the state machine reads it."""
    request = parse_request(_request_of(event))
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


def placement_from_tags(server_id: str, server: dict) -> dict:
    tags = server.get("tags") or aws.client("mgn").list_tags_for_resource(resourceArn=server["arn"]).get("tags", {})
    placement: dict[str, Any] = {}
    for tag, field in PLACEMENT_TAGS.items():
        value = tags.get(TAG_PREFIX + tag)
        if value:
            placement[field] = value.split() if field == "securityGroupIds" else value
    for required in ("target-account", "subnet", "security-groups"):
        if TAG_PREFIX + required not in tags:
            raise RequestInvalid(f"tags.{TAG_PREFIX}{required}", f"source server {server_id} has no such tag")
    return placement


def _check_allowlist(request: WaveRequest) -> None:
    allowed = config.target_account_allowlist()
    for server in request.servers:
        if server.target.account_id not in allowed:
            raise TargetNotAllowed(server.target.account_id)
