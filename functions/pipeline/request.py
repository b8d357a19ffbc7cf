"""The cutover request: its models, and the normalizing of every entry point into one shape.

Three inputs reach the state machine: a request started from the console or CLI, the same
request as the detail of a custom "Cutover Requested" event, and MGN's own launch result
event. All three leave this module as a `WaveRequest`, or as `RequestInvalid` naming the
field and the reason.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import RequestInvalid

ACCOUNT_ID = r"^\d{12}$"
SOURCE_SERVER_ID = r"^s-[0-9a-zA-Z]{17}$"
SUBNET_ID = r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$"
SECURITY_GROUP_ID = r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$"
INSTANCE_TYPE = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
# An instance profile name: IAM allows 1-128 of these characters.
INSTANCE_PROFILE = r"^[\w+=,.@-]{1,128}$"
KEY_ID = r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/+=,.@-]+|alias/[\w/+=,.@-]+|[0-9a-f-]{36})$"
SSM_PARAMETER = r"^[a-zA-Z0-9_.\-/]{1,1011}$"
WAVE_NAME = r"^[A-Za-z0-9_.\-]{1,40}$"

# Tags are copied onto the restored instance; EC2 allows 50 per resource and the pipeline
# adds its own few.
MAX_TAGS = 40
# The pipeline's own tags (managed, source server, execution, idempotency token): a request that
# set one could make the restored instance look like another server's, or like a resource the
# pipeline may delete.
PIPELINE_TAG_PREFIX = "mgn-cutover:"
# Letters and digits of any script, spaces and `_ . : / = + - @`: what EC2 accepts in tags.
# Control, format (zero-width, bidirectional override) and quoting characters are not in it.
TAG_TEXT = re.compile(r"[\w .:/=+\-@]*")

# RFC 6598's shared address space: not private to `ipaddress`, but a VPC may use it.
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
# What an instance in a VPC subnet can hold: private, and none of the special-purpose ranges
# that `ipaddress` also counts as private.
_NOT_ASSIGNABLE = [ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16",
                                                        "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
                                                        "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4")]

# The EventBridge envelope (what every event carries, whoever put it on the bus).
EVENT_ID = r"^[0-9A-Za-z-]{1,64}$"
EVENT_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"
REGION = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"
SOURCE_SERVER_ARN = r"^arn:aws[a-z-]*:mgn:[a-z0-9-]+:\d{12}:source-server/s-[0-9a-zA-Z]{17}$"
MGN_JOB_ID = r"^mgnjob-[0-9a-zA-Z]{17}$"


class _Strict(BaseModel):
    # Unknown fields are an error rather than silently ignored: a misspelt option must not
    # quietly fall back to a default during a downtime window. Strict types: "10" is not a
    # number and "yes" is not a boolean, in a request that moves a server.
    # The validators are built on first use rather than at import: only a cold start that
    # parses a request pays for them, and it pays once.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, strict=True, defer_build=True)


class Target(_Strict):
    account_id: str = Field(alias="accountId", pattern=ACCOUNT_ID)
    subnet_id: str = Field(alias="subnetId", pattern=SUBNET_ID)
    security_group_ids: list[Annotated[str, Field(pattern=SECURITY_GROUP_ID)]] = Field(
        alias="securityGroupIds", min_length=1, max_length=5
    )
    instance_type: str | None = Field(default=None, alias="instanceType", pattern=INSTANCE_TYPE, max_length=32)
    private_ip_address: str | None = Field(default=None, alias="privateIpAddress")
    instance_profile: str | None = Field(default=None, alias="instanceProfile", pattern=INSTANCE_PROFILE)
    kms_key_id: str | None = Field(default=None, alias="kmsKeyId", pattern=KEY_ID, max_length=2048)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("private_ip_address")
    @classmethod
    def _ipv4(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            address = ipaddress.IPv4Address(value)
        except ValueError as err:
            raise ValueError("must be an IPv4 address") from err
        if not (address.is_private or address in _SHARED_ADDRESS_SPACE):
            raise ValueError("must be a private IPv4 address")
        if any(address in network for network in _NOT_ASSIGNABLE) or address == ipaddress.IPv4Address(
                "255.255.255.255"):
            raise ValueError("must be an address an instance in a subnet can hold (not loopback, link-local, "
                             "broadcast, documentation or reserved)")
        return str(address)

    _unique = field_validator("security_group_ids")(classmethod(lambda cls, value: _no_repeated_group(value)))
    _tags = field_validator("tags")(classmethod(lambda cls, value: _valid_tags(value)))


def _no_repeated_group(value: list[str] | None) -> list[str] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("must not repeat a security group")
    return value


def _valid_tags(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for key, tag_value in value.items():
        _check_tag(key, tag_value)
    return value


def _check_tag(key: str, value: str) -> None:
    if not 1 <= len(key) <= 128:
        raise ValueError(f"tag key {key[:20]!r} must be 1 to 128 characters")
    if len(value) > 256:
        raise ValueError(f"tag {key!r} value must be at most 256 characters")
    if key.lower().startswith("aws:"):
        raise ValueError(f"tag key {key[:40]!r} must not start with aws:")
    if key.lower().startswith(PIPELINE_TAG_PREFIX):
        raise ValueError(f"tag key {key[:40]!r} must not start with {PIPELINE_TAG_PREFIX} (the pipeline's own tags)")
    if not TAG_TEXT.fullmatch(key) or not TAG_TEXT.fullmatch(value):
        raise ValueError(f"tag {key[:40]!r} has characters EC2 does not accept in tags")


class Server(_Strict):
    source_server_id: str = Field(alias="sourceServerId", pattern=SOURCE_SERVER_ID)
    target: Target
    # Set when MGN already launched the cutover (the console, or MGN's launch result event):
    # the pipeline then picks the job up instead of starting one.
    launch_job_id: str | None = Field(default=None, alias="launchJobId", pattern=MGN_JOB_ID)


class Approval(_Strict):
    """A pause before finalize (the point of no return) until someone approves the wave's restored servers."""

    required: bool = False
    # The pause ends by itself after this long (default 4 hours), as a rejection: the wave rolls back.
    timeout_seconds: int = Field(default=14400, alias="timeoutSeconds", ge=1, le=86400)


class Options(_Strict):
    # A Distributed Map runs up to 10,000 children, but each server in flight holds one MGN launch job
    # while its cutover launches, and MGN counts at most 200 source servers in active jobs: above 200,
    # Start Cutover would fail on MGN's quota. Copies past EC2's limit wait for a slot (waitingForSlot).
    max_concurrency: int = Field(default=10, alias="maxConcurrency", ge=1, le=200)
    # Rebooting the cutover instance gives application-consistent snapshots; the instance is
    # a copy that nobody serves from yet, so it is the default.
    no_reboot: bool = Field(default=False, alias="noReboot")
    agent_config_parameter: str | None = Field(default=None, alias="agentConfigParameter", pattern=SSM_PARAMETER)
    install_agent: bool = Field(default=True, alias="installAgent")
    cleanup: bool = True
    # The shortest wait of a poll loop; the wait grows with the time the operation has taken so far
    # (pipeline/state.py), so noticing a finished operation adds at most 5% of its duration or this.
    # At least a second: a wait of 0 would check again without time passing.
    poll_interval_seconds: int = Field(default=30, alias="pollIntervalSeconds", ge=1, le=3600)
    # Each check of a poll loop adds about nine history events; a child execution keeps at most
    # 25,000, so a loop of more checks could fail the child execution before its rollback runs.
    # NOTE: the bound is per loop; a server whose every loop ran to its bound would still exceed it.
    max_poll_attempts: int = Field(default=240, alias="maxPollAttempts", ge=1, le=2500)
    # Every wait also has an overall deadline, however quick its checks are (default 4 hours).
    max_wait_seconds: int = Field(default=14400, alias="maxWaitSeconds", ge=1, le=86400)
    approval: Approval = Field(default_factory=Approval)
    # "sharedImage" launches the restored instance straight from the shared image, re-encrypting its
    # volumes under the target's key, and waits for the target's own copy only after the agent steps;
    # "targetImage" waits for that copy and launches from it (one full copy more before finalize).
    restore_from: Literal["sharedImage", "targetImage"] = Field(default="sharedImage", alias="restoreFrom")
    # Preflight only: replication lagging more than this (MGN's lagDuration) fails the server's preflight.
    max_replication_lag_seconds: int = Field(default=900, alias="maxReplicationLagSeconds", ge=0, le=86400)


MAX_PREFLIGHT_SERVERS = 80


class WaveRequest(_Strict):
    wave: str = Field(default="wave", pattern=WAVE_NAME)
    # A wave of 500 fits one execution: one child execution per server, a copy waits for a slot
    # (waitingForSlot) rather than fail at EC2's concurrent-copy limit, and the Map's report lines
    # replace the servers, so the state stays under the 256 KiB Step Functions allows.
    servers: list[Server] = Field(min_length=1, max_length=500)
    options: Options = Field(default_factory=Options)
    # "preflight" runs only the read-only checks of every server (pipeline/preflight.py) and changes nothing.
    mode: Literal["cutover", "preflight"] = "cutover"

    @model_validator(mode="after")
    def _one_entry_per_server(self) -> WaveRequest:
        seen: set[str] = set()
        for index, server in enumerate(self.servers):
            if server.source_server_id in seen:
                raise RequestInvalid(f"servers[{index}].sourceServerId", "names a server already in the wave")
            seen.add(server.source_server_id)
        # NOTE: a preflight keeps every server's checks (about 2.5 KB each) beside the request in the
        # state, so it stops where that reaches the 256 KiB Step Functions allows; a bigger wave is
        # checked in parts. Results written to S3 (ResultWriter) would lift the limit.
        if self.mode == "preflight" and len(self.servers) > MAX_PREFLIGHT_SERVERS:
            raise RequestInvalid("servers", f"a preflight checks at most {MAX_PREFLIGHT_SERVERS} servers at once"
                                            f" (this one names {len(self.servers)}): check the wave in parts")
        return self


# A request lists its servers, or names the MGN wave or application that holds them.
SERVER_SOURCES = ("servers", "mgnWave", "mgnApplication")
# MGN's wave and application names: 1-256 characters, no leading, trailing or doubled white space.
MGN_NAME = r"^[^\s\x00]( *[^\s\x00])*$"
MGN_WAVE_ID = r"^wave-[0-9a-zA-Z]{17}$"
MGN_APPLICATION_ID = r"^app-[0-9a-zA-Z]{17}$"
# Where a server stands belongs to that server: a wave-wide default would put every server whose tag was
# forgotten in the same place, so these come from each server's own tag and nowhere else.
PER_SERVER_FIELDS = {"accountId": "target-account", "subnetId": "subnet", "privateIpAddress": "private-ip"}


class TargetDefaults(_Strict):
    """Target fields for the servers of an MGN wave or application whose tags leave them out."""

    security_group_ids: list[Annotated[str, Field(pattern=SECURITY_GROUP_ID)]] | None = Field(
        default=None, alias="securityGroupIds", min_length=1, max_length=5
    )
    instance_type: str | None = Field(default=None, alias="instanceType", pattern=INSTANCE_TYPE, max_length=32)
    instance_profile: str | None = Field(default=None, alias="instanceProfile", pattern=INSTANCE_PROFILE)
    kms_key_id: str | None = Field(default=None, alias="kmsKeyId", pattern=KEY_ID, max_length=2048)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_per_server_field(cls, value: Any) -> Any:
        for field, tag in PER_SERVER_FIELDS.items():
            if isinstance(value, dict) and field in value:
                raise RequestInvalid(f"targetDefaults.{field}", f"is never a default: each server's tag "
                                                                 f"{PIPELINE_TAG_PREFIX}{tag} gives it")
        return value

    _unique = field_validator("security_group_ids")(classmethod(lambda cls, value: _no_repeated_group(value)))
    _tags = field_validator("tags")(classmethod(lambda cls, value: _valid_tags(value)))


class MgnRequest(WaveRequest):
    """A request naming an MGN wave or application instead of listing servers; MGN gives the servers."""

    servers: list[Server] = Field(default_factory=list, max_length=0)
    mgn_wave: str | None = Field(default=None, alias="mgnWave", pattern=MGN_NAME, max_length=256)
    mgn_application: str | None = Field(default=None, alias="mgnApplication", pattern=MGN_NAME, max_length=256)
    target_defaults: TargetDefaults = Field(default_factory=TargetDefaults, alias="targetDefaults")


class EventEnvelope(_Strict):
    """The fields EventBridge puts around every event; `detail` is read by its own model."""

    version: Literal["0"]
    id: str = Field(pattern=EVENT_ID)
    detail_type: str = Field(alias="detail-type", min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=256)
    account: str = Field(pattern=ACCOUNT_ID)
    time: str = Field(pattern=EVENT_TIME)
    region: str = Field(pattern=REGION)
    resources: list[Annotated[str, Field(min_length=1, max_length=1600)]] = Field(max_length=10)
    detail: Any = None
    replay_name: str | None = Field(default=None, alias="replay-name", max_length=256)


class MgnLaunchDetail(_Strict):
    """The detail of MGN's launch result event: its documented two fields and nothing else."""

    state: Literal["CUTOVER_LAUNCH_SUCCEEDED"]
    job_id: str = Field(alias="job-id", pattern=MGN_JOB_ID)


def parse_envelope(event: dict) -> EventEnvelope:
    """Validate an EventBridge event's envelope; raise `RequestInvalid` naming the first bad field."""
    return _validated(EventEnvelope, event)


def parse_mgn_launch(event: dict) -> tuple[str, str]:
    """The source server id and job id of MGN's cutover launch result event, validated."""
    envelope = parse_envelope(event)
    detail = _validated(MgnLaunchDetail, event.get("detail"), prefix="detail")
    if len(envelope.resources) != 1 or not re.fullmatch(SOURCE_SERVER_ARN, envelope.resources[0]):
        raise RequestInvalid("resources[0]", "must be the only resource: the ARN of the source server")
    arn = envelope.resources[0]
    # MGN reports its own account's servers; a source server of another account is not one this
    # pipeline's MGN can cut over, whoever forwarded the event.
    if arn.split(":")[4] != envelope.account or arn.split(":")[3] != envelope.region:
        raise RequestInvalid("resources[0]", "must be a source server of the event's own account and region")
    return arn.rsplit("/", 1)[1], detail.job_id


def parse_request(payload: Any) -> WaveRequest:
    """Validate a console/CLI request; raise `RequestInvalid` naming the first bad field."""
    if not isinstance(payload, dict):
        raise RequestInvalid("request", "must be a JSON object")
    return _validated(WaveRequest, payload)


def server_source(payload: Any) -> str:
    """Which of `servers`, `mgnWave`, `mgnApplication` a request gives; `RequestInvalid` unless exactly one."""
    if not isinstance(payload, dict):
        return "servers"
    given = [name for name in SERVER_SOURCES if name in payload]
    if len(given) != 1:
        raise RequestInvalid(", ".join(given) or "servers", "give exactly one of servers, mgnWave or mgnApplication"
                             + ("" if given else "; the request gives none"))
    if given[0] == "servers" and "targetDefaults" in payload:
        raise RequestInvalid("targetDefaults", "applies only to the servers of mgnWave or mgnApplication; give each "
                                               "listed server its whole target")
    return given[0]


def parse_mgn_request(payload: dict) -> MgnRequest:
    """Validate a request naming an MGN wave or application, before MGN is asked about it."""
    return _validated(MgnRequest, payload)


def parse_target(placement: dict) -> Target:
    """Validate one server's target; `RequestInvalid` names the target field (no `servers[i]` prefix)."""
    return _validated(Target, placement)


def max_servers() -> int:
    """The most servers one request may hold."""
    return next(rule.max_length for rule in WaveRequest.model_fields["servers"].metadata
                if getattr(rule, "max_length", None) is not None)


def _validated(model: type[BaseModel], payload: Any, prefix: str = "") -> Any:
    if not isinstance(payload, dict):
        raise RequestInvalid(prefix or "request", "must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        raise RequestInvalid(_field_path(first["loc"], prefix), _reason(first)) from None


def _field_path(location: tuple, prefix: str = "") -> str:
    path = prefix
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            part = _printable(str(part))
            path += f".{part}" if path else part
    return path or "request"


def _printable(name: str) -> str:
    # An unknown field's name comes from the sender: it is echoed into the error (and so the
    # execution's history and logs) only short and without control or format characters.
    cleaned = "".join(char if char.isprintable() else "?" for char in name)
    return cleaned if len(cleaned) <= 64 else cleaned[:61] + "..."


def _reason(error: dict) -> str:
    message = error["msg"]
    # pydantic prefixes custom validator messages; the reason reads better without it.
    return message.removeprefix("Value error, ")
