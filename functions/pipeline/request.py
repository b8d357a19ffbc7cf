"""The cutover request: its models, and the normalizing of every entry point into one shape.

Three inputs reach the state machine: a request started from the console or CLI, the same
request as the detail of a custom "Cutover Requested" event, and MGN's own launch result
event. All three leave this module as a `WaveRequest`, or as `RequestInvalid` naming the
field and the reason.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

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


class _Strict(BaseModel):
    # Unknown fields are an error rather than silently ignored: a misspelt option must not
    # quietly fall back to a default during a downtime window.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


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
        if not address.is_private:
            raise ValueError("must be a private IPv4 address")
        return str(address)

    @field_validator("security_group_ids")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a security group")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
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
        raise ValueError(f"tag key {key!r} must not start with aws:")
    if not re.fullmatch(r"[\w .:/=+\-@]*", key + value):
        raise ValueError(f"tag {key!r} has characters EC2 does not accept in tags")


class Server(_Strict):
    source_server_id: str = Field(alias="sourceServerId", pattern=SOURCE_SERVER_ID)
    target: Target
    # Set when MGN already launched the cutover (the console, or MGN's launch result event):
    # the pipeline then picks the job up instead of starting one.
    launch_job_id: str | None = Field(default=None, alias="launchJobId", pattern=r"^mgnjob-[0-9a-zA-Z]{17}$")


class Options(_Strict):
    max_concurrency: int = Field(default=10, alias="maxConcurrency", ge=1, le=200)
    # Rebooting the cutover instance gives application-consistent snapshots; the instance is
    # a copy that nobody serves from yet, so it is the default.
    no_reboot: bool = Field(default=False, alias="noReboot")
    agent_config_parameter: str | None = Field(default=None, alias="agentConfigParameter", pattern=SSM_PARAMETER)
    install_agent: bool = Field(default=True, alias="installAgent")
    cleanup: bool = True
    poll_interval_seconds: int = Field(default=30, alias="pollIntervalSeconds", ge=0, le=3600)
    max_poll_attempts: int = Field(default=240, alias="maxPollAttempts", ge=1, le=10000)


class WaveRequest(_Strict):
    wave: str = Field(default="wave", pattern=WAVE_NAME)
    servers: list[Server] = Field(min_length=1, max_length=200)
    options: Options = Field(default_factory=Options)

    @model_validator(mode="after")
    def _one_entry_per_server(self) -> WaveRequest:
        seen: set[str] = set()
        for index, server in enumerate(self.servers):
            if server.source_server_id in seen:
                raise RequestInvalid(f"servers[{index}].sourceServerId", "names a server already in the wave")
            seen.add(server.source_server_id)
        return self


def parse_request(payload: Any) -> WaveRequest:
    """Validate a console/CLI request; raise `RequestInvalid` naming the first bad field."""
    if not isinstance(payload, dict):
        raise RequestInvalid("request", "must be a JSON object")
    try:
        return WaveRequest.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        raise RequestInvalid(_field_path(first["loc"]), _reason(first)) from None


def _field_path(location: tuple) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "request"


def _reason(error: dict) -> str:
    message = error["msg"]
    # pydantic prefixes custom validator messages; the reason reads better without it.
    return message.removeprefix("Value error, ")
