"""The rehearsal sandbox's world: a migration account and target accounts on moto, built for a cutover request.

A World is built inside an active moto mock. It installs the AWS rules and the MGN simulator, then
creates what a request refers to: the MGN source servers in the migration account, and in each target
account the VPC, subnets and security groups with the ids the request names, the instance profile for
restored instances, the keys the request names, the role the pipeline assumes, and the CloudWatch agent
configuration parameter. `inventory()` tells what every account holds, for the rehearsal report and tests.

A spec tunes the world (all keys optional; an unknown key is an error, so a typo cannot pass silently):

    {"speed": {"mgnLaunchSeconds": 600, "conversionMiBps": 500, "snapshotMiBps": 100, "copyMiBps": 75,
               "instanceBootSeconds": 40, "statusCheckSeconds": 180, "ssmRegistrationSeconds": 90,
               "commandStartSeconds": 2, "commandSeconds": 30, "invocationSeconds": 0.3, "coldStartSeconds": 1},
     "commandFailures": {"AWS-ConfigureAWSPackage": "what the agent writes to standard error"},
     "sharingKeyPolicy": "template",
     "targetAccounts": {"222222222222": {"roleTrustsAccount": "999999999999", "instanceProfiles": false}},
     "defaultServer": {...},
     "servers": {"s-...": {"diskSizesGiB": [8, 100], "replicationKey": "alias/mgn-replication",
                           "launchFails": false, "lifeCycle": "READY_FOR_CUTOVER", "hostname": "web-01",
                           "instanceType": "t3.medium", "launchDisposition": "STARTED", "tags": {...},
                           "archived": false}},
     "mgn": {"waves": {"wave-3": {"applications": ["billing"], "id": "wave-...", "archived": false}},
             "applications": {"billing": {"servers": ["s-..."], "id": "app-...", "archived": false}}},
     "limits": {"concurrentImageCopies": 50}}

`limits.concurrentImageCopies` is how many AMI copies EC2 runs at once per destination account and region;
one more is refused with ResourceLimitExceeded (AWS's default is about 50).

`mgn` groups the world's source servers into MGN applications and waves (by name; ids are derived from the
names unless given). A server an application names is in MGN even when the request does not name it.

`speed` says how long AWS takes, in seconds of the rehearsal's simulated clock (sandbox/clock.py); the values
above are the defaults. An MGN cutover launch takes `mgnLaunchSeconds` (job start, conversion server, launch
of the cutover instance: commonly 10 minutes) plus its disks at `conversionMiBps`. CreateImage snapshots every
volume in full at `snapshotMiBps` (first snapshots of new volumes run at about 100 MiB/s), and CopyImage under
a new key is a full copy at `copyMiBps` (commonly 50 to 100 MiB/s). RunInstances is pending for
`instanceBootSeconds`, then its status checks initialize for `statusCheckSeconds` (AWS: a few minutes); the
SSM agent checks in `ssmRegistrationSeconds` after boot; a Run Command invocation exists
`commandStartSeconds` after SendCommand and runs for `commandSeconds`. Each Lambda invocation takes
`invocationSeconds`, plus `coldStartSeconds` the first time a function runs for a server (Python with boto3
initializes in about a second). A throughput of 0 means at once (for tests of one step, whose clock stands).
A `replicationKey` of "sharing-key" is the pipeline stack's sharing key. `sharingKeyPolicy` "withoutTargets"
leaves the target accounts out of that key's policy. `roleTrustsAccount` gives a target account a role that
trusts another account's pipeline; `instanceProfiles` false gives it no instance profile at all.

What a preflight finds wrong (sandbox/worlds/preflight-problems.json has one server of each): a server's
`"replication": {"state": "STALLED", "lagSeconds": 7200}` (MGN's dataReplicationState and lagDuration), and a
target account's `"absent": ["subnet-...", "sg-...", "ProfileName"]` (requested, not built),
`"takenPrivateIps": ["10.20.1.50"]` (held by another network interface), `"securityGroupsElsewhere": ["sg-..."]`
(built in another VPC than the subnet's), `"vcpuQuota": 2` (Service Quotas L-1216C47A, default 1152),
`"agentConfigParameter": false` (no agent configuration parameter) and `"inSharingKeyPolicy": false` (the
sharing key's policy leaves this account out). Each source server also has the EC2 launch template its MGN
launch configuration names, with the server's `instanceType`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
from moto.core.models import MockAWS
from moto.ec2.models import ec2_backends
from moto.ec2.models import launch_templates as moto_launch_templates
from moto.ec2.models import security_groups as moto_security_groups
from moto.ec2.models import subnets as moto_subnets
from moto.iam.models import AWSManagedPolicy, iam_backends
from moto.kms.models import kms_backends
from moto.ssm.models import ssm_backends

from sandbox import aws_rules, clock, mgn
from sandbox import template as cfn

MIGRATION_ACCOUNT = mgn.DEFAULT_ACCOUNT
REGION = mgn.DEFAULT_REGION
DEFAULT_TARGET_ROLE_NAME = "MgnCutoverTargetRole"
DEFAULT_INSTANCE_PROFILE = "MgnCutoverRestoredInstance"
DEFAULT_AGENT_CONFIG_PARAMETER = "AmazonCloudWatch-linux"
DEFAULT_EXTERNAL_ID = "mgn-cutover-sandbox"
DEFAULT_PIPELINE_STACK = "mgn-cutover"
# The pipeline's function roles live under this path (template.yaml's RolePath); the target role trusts the path.
PIPELINE_ROLE_PATH = "/mgn-cutover/{stack}/"
# Who the migration account's plain credentials are in a world: one of the pipeline's roles.
DEFAULT_PIPELINE_ROLE_ARNS = (f"arn:aws:iam::{MIGRATION_ACCOUNT}:role/mgn-cutover/{DEFAULT_PIPELINE_STACK}/"
                              "MgnCutoverPipelineRole",)
SHARING_KEY = "sharing-key"
SHARING_KEY_POLICIES = ("template", "withoutTargets")
# MGN's dataReplicationState values a world can give a server.
REPLICATION_STATES = ("CONTINUOUS", "STALLED", "INITIAL_SYNC", "BACKLOG", "RESCAN", "PAUSED", "STOPPED")
# Service Quotas' Running On-Demand Standard instances quota (vCPUs) of a target account unless its spec says.
VCPU_QUOTA_CODE = "L-1216C47A"
DEFAULT_VCPU_QUOTA = 1152
RESTORED_INSTANCE_POLICIES = ("AmazonSSMManagedInstanceCore", "CloudWatchAgentServerPolicy")

# Environment for the process that opens the mock, set before it starts: moto otherwise copies its catalogue
# of ~1300 public AMIs into every account it creates (seconds an account); the sandbox never launches from them.
FAST_MOTO_ENVIRONMENT = {"MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}

# The role the world assumes to build a target account; it does not exist, which moto allows.
_BUILDER_ROLE = "SandboxWorldBuilder"
_FIRST_FREE_NETWORK = ipaddress.ip_network("10.0.0.0/16")

AGENT_CONFIG = {
    "agent": {"metrics_collection_interval": 60, "run_as_user": "cwagent"},
    "metrics": {
        "append_dimensions": {"InstanceId": "${aws:InstanceId}"},
        "metrics_collected": {
            "mem": {"measurement": ["mem_used_percent"]},
            "disk": {"measurement": ["used_percent"], "resources": ["/"]},
        },
    },
}


class WorldSpecError(ValueError):
    """A world spec or request the sandbox cannot build a world from."""


class NoMockActive(RuntimeError):
    """A World was built outside moto's mock; it would have created resources in a real account."""


# --- the spec --------------------------------------------------------------------------------------------------

# How long AWS takes, in simulated seconds (or MiB/s for a throughput); the module docstring says where from.
DEFAULT_SPEED = {"mgnLaunchSeconds": 600.0, "conversionMiBps": 500.0, "snapshotMiBps": 100.0, "copyMiBps": 75.0,
                 "instanceBootSeconds": 40.0, "statusCheckSeconds": 180.0, "ssmRegistrationSeconds": 90.0,
                 "commandStartSeconds": 2.0, "commandSeconds": 30.0, "invocationSeconds": 0.3,
                 "coldStartSeconds": 1.0}


@dataclass(frozen=True)
class ServerSpec:
    """How one source server replicates and launches in the world."""

    disks_gib: tuple[int, ...] = (8,)
    replication_key: str | None = None
    launch_fails: bool = False
    life_cycle: str = "READY_FOR_CUTOVER"
    hostname: str | None = None
    instance_type: str = "t3.medium"
    launch_disposition: str = "STARTED"
    tags: dict[str, str] = field(default_factory=dict)
    archived: bool = False
    # MGN's data replication: {"state": "STALLED", "lagSeconds": 7200}; default CONTINUOUS, no lag.
    replication: dict[str, Any] = field(default_factory=dict)

    _FIELDS = {
        "diskSizesGiB": "disks_gib",
        "replicationKey": "replication_key",
        "launchFails": "launch_fails",
        "lifeCycle": "life_cycle",
        "hostname": "hostname",
        "instanceType": "instance_type",
        "launchDisposition": "launch_disposition",
        "tags": "tags",
        "archived": "archived",
        "replication": "replication",
    }

    @classmethod
    def parse(cls, raw: dict, where: str, base: ServerSpec | None = None) -> ServerSpec:
        values = dict((base or cls()).__dict__)
        for key, value in _known(raw, cls._FIELDS, where).items():
            values[cls._FIELDS[key]] = tuple(value) if key == "diskSizesGiB" else value
        spec = cls(**values)
        if not spec.disks_gib or not all(isinstance(size, int) and 1 <= size <= 16384 for size in spec.disks_gib):
            raise WorldSpecError(f"{where}.diskSizesGiB must list 1 to 16384 GiB sizes")
        replication = _known(spec.replication, {"state": 0, "lagSeconds": 0}, f"{where}.replication")
        if replication.get("state", "CONTINUOUS") not in REPLICATION_STATES:
            raise WorldSpecError(f"{where}.replication.state must be one of {list(REPLICATION_STATES)}")
        _whole(replication.get("lagSeconds", 0), f"{where}.replication.lagSeconds", 10**6)
        return spec


@dataclass(frozen=True)
class TargetAccountSpec:
    """What the landing zone gave one target account, where it differs from the target stack's defaults."""

    role_trusts_account: str | None = None
    instance_profiles: bool = True
    # What a preflight finds wrong: ids or names the request gives that the account lacks, private IPs other
    # interfaces hold, security groups in another VPC than the requested subnet's, the vCPU quota, no agent
    # configuration parameter, and the account left out of the sharing key's policy.
    absent: tuple[str, ...] = ()
    taken_private_ips: tuple[str, ...] = ()
    security_groups_elsewhere: tuple[str, ...] = ()
    vcpu_quota: int = DEFAULT_VCPU_QUOTA
    agent_config_parameter: bool = True
    in_sharing_key_policy: bool = True

    _LISTS = {"absent": "absent", "takenPrivateIps": "taken_private_ips",
              "securityGroupsElsewhere": "security_groups_elsewhere"}
    _FLAGS = {"agentConfigParameter": "agent_config_parameter", "inSharingKeyPolicy": "in_sharing_key_policy"}

    @classmethod
    def parse(cls, raw: dict, where: str) -> TargetAccountSpec:
        raw = _known(raw, {"roleTrustsAccount": 0, "instanceProfiles": 0, "vcpuQuota": 0, **cls._LISTS, **cls._FLAGS},
                     where)
        trusted = raw.get("roleTrustsAccount")
        if trusted is not None and not (isinstance(trusted, str) and trusted.isdigit() and len(trusted) == 12):
            raise WorldSpecError(f"{where}.roleTrustsAccount must be a 12-digit account id")
        values: dict[str, Any] = {"vcpu_quota": _whole(raw.get("vcpuQuota", DEFAULT_VCPU_QUOTA), f"{where}.vcpuQuota",
                                                       10**6)}
        for key, name in cls._LISTS.items():
            listed = raw.get(key, [])
            if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
                raise WorldSpecError(f"{where}.{key} must be a list of strings")
            values[name] = tuple(listed)
        for key, name in cls._FLAGS.items():
            if not isinstance(raw.get(key, True), bool):
                raise WorldSpecError(f"{where}.{key} must be true or false")
            values[name] = raw.get(key, True)
        return cls(trusted, bool(raw.get("instanceProfiles", True)), **values)


@dataclass(frozen=True)
class WorldSpec:
    """The knobs of a world: speed, failures, the target accounts' and each server's behaviour."""

    speed: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SPEED))
    command_failures: dict[str, str] = field(default_factory=dict)
    sharing_key_policy: str = "template"
    target_accounts: dict[str, TargetAccountSpec] = field(default_factory=dict)
    default_server: ServerSpec = field(default_factory=ServerSpec)
    servers: dict[str, ServerSpec] = field(default_factory=dict)
    mgn: MgnGroupsSpec = field(default_factory=lambda: MgnGroupsSpec())
    concurrent_image_copies: int = 50

    _KEYS = {"speed": 0, "commandFailures": 0, "sharingKeyPolicy": 0, "targetAccounts": 0,
             "defaultServer": 0, "servers": 0, "mgn": 0, "limits": 0}

    @classmethod
    def parse(cls, raw: dict | None) -> WorldSpec:
        raw = _known(raw or {}, cls._KEYS, "spec")
        values: dict[str, Any] = {}
        speed = _known(raw.get("speed", {}), DEFAULT_SPEED, "spec.speed")
        given = {key: _seconds(value, f"spec.speed.{key}") for key, value in speed.items()}
        values["speed"] = {**DEFAULT_SPEED, **given}
        raw_failures = raw.get("commandFailures", {})
        failures = _known(raw_failures, _keys_of(raw_failures), "spec.commandFailures")
        values["command_failures"] = {str(name): str(error) for name, error in failures.items()}
        policy = raw.get("sharingKeyPolicy", "template")
        if policy not in SHARING_KEY_POLICIES:
            raise WorldSpecError(f"spec.sharingKeyPolicy must be one of {list(SHARING_KEY_POLICIES)}")
        values["sharing_key_policy"] = policy
        values["target_accounts"] = {
            account: TargetAccountSpec.parse(entry, f"spec.targetAccounts.{account}")
            for account, entry in _known(raw.get("targetAccounts", {}), _keys_of(raw.get("targetAccounts")),
                                         "spec.targetAccounts").items()
        }
        default = ServerSpec.parse(raw.get("defaultServer", {}), "spec.defaultServer")
        servers = {
            server_id: ServerSpec.parse(entry, f"spec.servers.{server_id}", default)
            for server_id, entry in raw.get("servers", {}).items()
        }
        values["mgn"] = MgnGroupsSpec.parse(raw.get("mgn", {}), "spec.mgn")
        limits = _known(raw.get("limits", {}), {"concurrentImageCopies": 0}, "spec.limits")
        if "concurrentImageCopies" in limits:
            values["concurrent_image_copies"] = _whole(limits["concurrentImageCopies"],
                                                       "spec.limits.concurrentImageCopies")
        return cls(default_server=default, servers=servers, **values)

    def target_account(self, account_id: str) -> TargetAccountSpec:
        return self.target_accounts.get(account_id, TargetAccountSpec())

    def server(self, source_server_id: str) -> ServerSpec:
        return self.servers.get(source_server_id, self.default_server)


@dataclass(frozen=True)
class MgnGroupSpec:
    """One MGN wave or application: its id (None: derived from its name), archived or not, and its members."""

    id: str | None = None
    archived: bool = False
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class MgnGroupsSpec:
    """The world's MGN waves (of applications) and applications (of source servers), by name."""

    waves: dict[str, MgnGroupSpec] = field(default_factory=dict)
    applications: dict[str, MgnGroupSpec] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any, where: str) -> MgnGroupsSpec:
        raw = _known(raw, {"waves": 0, "applications": 0}, where)
        waves = {name: _group(entry, f"{where}.waves.{name}", "applications", r"wave-[0-9a-zA-Z]{17}")
                 for name, entry in _known(raw.get("waves", {}), _keys_of(raw.get("waves")), f"{where}.waves").items()}
        applications = {
            name: _group(entry, f"{where}.applications.{name}", "servers", r"app-[0-9a-zA-Z]{17}")
            for name, entry in _known(raw.get("applications", {}), _keys_of(raw.get("applications")),
                                      f"{where}.applications").items()}
        seen: dict[str, str] = {}
        for wave, spec in waves.items():
            for application in spec.members:
                if application not in applications:
                    raise WorldSpecError(f"{where}.waves.{wave} names application {application!r}, which "
                                         f"{where}.applications does not define")
                if application in seen:
                    raise WorldSpecError(f"{where}: application {application!r} is in waves {seen[application]!r} "
                                         f"and {wave!r}; MGN puts an application in one wave at most")
                seen[application] = wave
        return cls(waves, applications)

    def wave_of(self, application: str) -> str | None:
        return next((wave for wave, spec in self.waves.items() if application in spec.members), None)

    def server_ids(self) -> list[str]:
        return list(dict.fromkeys(server for spec in self.applications.values() for server in spec.members))


def _group(raw: Any, where: str, members: str, id_pattern: str) -> MgnGroupSpec:
    raw = _known(raw, {members: 0, "id": 0, "archived": 0}, where)
    listed = raw.get(members, [])
    if not isinstance(listed, list) or not all(isinstance(member, str) for member in listed):
        raise WorldSpecError(f"{where}.{members} must be a list of names")
    group_id = raw.get("id")
    if group_id is not None and not (isinstance(group_id, str) and re.fullmatch(id_pattern, group_id)):
        raise WorldSpecError(f"{where}.id must match {id_pattern}")
    if not isinstance(raw.get("archived", False), bool):
        raise WorldSpecError(f"{where}.archived must be true or false")
    return MgnGroupSpec(group_id, raw.get("archived", False), tuple(listed))


def _keys_of(value: Any) -> dict:
    """Every key of an object is allowed (it names an account or a document); `_known` still checks the type."""
    return dict(value) if isinstance(value, dict) else {}


def _seconds(value: Any, where: str, highest: float = 100_000) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= highest:
        raise WorldSpecError(f"{where} must be a number from 0 to {highest:g}")
    return float(value)


def _whole(value: Any, where: str, highest: int = 1000) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= highest:
        raise WorldSpecError(f"{where} must be a whole number from 0 to {highest}")
    return value


def _known(raw: Any, allowed: dict, where: str) -> dict:
    if not isinstance(raw, dict):
        raise WorldSpecError(f"{where} must be an object")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise WorldSpecError(f"{where} has unknown keys {unknown}; known: {sorted(allowed)}")
    return raw


# --- the world -------------------------------------------------------------------------------------------------


class World:
    """The accounts of one rehearsal; `close()` (or leaving a `with` block) takes the sandbox's patches off moto."""

    def __init__(self, spec: dict | None = None, *, region: str = REGION, migration_account: str = MIGRATION_ACCOUNT,
                 pipeline_stack: str = DEFAULT_PIPELINE_STACK, sharing_key_arn: str | None = None):
        if not MockAWS._mocks_active:
            raise NoMockActive("build the World inside moto's mock_aws(), never against a real account")
        self.spec = WorldSpec.parse(spec)
        self.region = region
        self.migration_account = migration_account
        self.pipeline_stack = pipeline_stack
        # The pipeline stack's sharing key, when the world stands beside one: what "sharing-key" names.
        self.sharing_key_arn = sharing_key_arn
        self.target_accounts: list[str] = []
        self.target_role_name = DEFAULT_TARGET_ROLE_NAME
        self.external_id = DEFAULT_EXTERNAL_ID
        self._clients: dict[tuple[str, str], Any] = {}
        self._credentials: dict[str, dict] = {}

        aws_rules.install()
        # Each world has its own simulated time, from the same start: a rehearsal is the same every run.
        self.clock = clock.install(clock.Clock())
        self._set_pacing()
        aws_rules.set_default_principal(
            f"arn:aws:iam::{migration_account}:role{PIPELINE_ROLE_PATH.format(stack=pipeline_stack)}"
            "MgnCutoverPipelineRole")
        self.mgn = mgn.install(mgn.MgnSimulator(self.spec.speed["mgnLaunchSeconds"], {migration_account},
                                                conversion_mib_per_second=self.spec.speed["conversionMiBps"]))

    def _set_pacing(self) -> None:
        pacing, speed = aws_rules.pacing, self.spec.speed
        pacing.snapshot_mib_per_second, pacing.copy_mib_per_second = speed["snapshotMiBps"], speed["copyMiBps"]
        pacing.instance_boot_seconds, pacing.status_check_seconds = speed["instanceBootSeconds"], speed[
            "statusCheckSeconds"]
        pacing.ssm_registration_seconds = speed["ssmRegistrationSeconds"]
        pacing.command_start_seconds, pacing.command_seconds = speed["commandStartSeconds"], speed["commandSeconds"]
        pacing.command_failures = dict(self.spec.command_failures)
        aws_rules.limits.concurrent_image_copies = self.spec.concurrent_image_copies

    @classmethod
    def for_request(cls, request: dict, spec: dict | None = None, target_role_name: str = DEFAULT_TARGET_ROLE_NAME,
                    external_id: str = DEFAULT_EXTERNAL_ID, pipeline_stack: str = DEFAULT_PIPELINE_STACK,
                    sharing_key_arn: str | None = None) -> World:
        """A world holding everything `request` (console input, normalized, or a Cutover Requested event) names."""
        body = request_body(request)
        world = cls(spec, pipeline_stack=pipeline_stack, sharing_key_arn=sharing_key_arn)
        world.target_role_name, world.external_id = target_role_name, external_id

        servers = [server for server in body["servers"] if isinstance(server, dict) and server.get("sourceServerId")]
        for server in servers:
            world.add_source_server(server["sourceServerId"])
        world.add_mgn_groups()
        _launch_console_jobs(world, servers)

        agent_parameter = (body.get("options") or {}).get("agentConfigParameter") or DEFAULT_AGENT_CONFIG_PARAMETER
        for account_id, targets in _targets_by_account(servers).items():
            world.add_target_account(account_id, targets, agent_config_parameter=agent_parameter)
        return world

    def __enter__(self) -> World:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop simulating: MGN calls and the AWS rules go back to plain moto."""
        mgn.uninstall()
        aws_rules.set_default_principal(None)
        aws_rules.uninstall()

    # --- building ------------------------------------------------------------------------------------------

    def add_source_server(self, source_server_id: str) -> mgn.SourceServer:
        """An MGN source server in the migration account, replicating healthily, shaped by the spec."""
        spec = self.spec.server(source_server_id)
        key = None
        if spec.replication_key == SHARING_KEY:
            if not self.sharing_key_arn:
                raise WorldSpecError(f"server {source_server_id} replicates under the sharing key, but this world "
                                     "stands beside no pipeline stack")
            key = self.sharing_key_arn
        elif spec.replication_key not in (None, "aws/ebs", aws_rules.AWS_MANAGED_EBS_ALIAS):
            key = self.ensure_key(self.migration_account, spec.replication_key)
        launch = mgn.LaunchSettings(instance_type=spec.instance_type, launch_disposition=spec.launch_disposition)
        server = self.mgn.add_source_server(
            source_server_id,
            self.migration_account,
            self.region,
            hostname=spec.hostname,
            disks_gib=list(spec.disks_gib),
            replication_key_arn=key,
            tags={"Wave": "sandbox", **spec.tags},
            launch=launch,
            life_cycle=spec.life_cycle,
            launch_fails=spec.launch_fails,
        )
        server.is_archived = bool(spec.archived)
        server.replication_state = spec.replication.get("state", server.replication_state)
        server.replication_lag_seconds = spec.replication.get("lagSeconds", 0)
        self._build_launch_template(server)
        return server

    def _build_launch_template(self, server: mgn.SourceServer) -> None:
        """The EC2 launch template MGN keeps for the server, with the id its launch configuration names."""
        ec2 = ec2_backends[self.migration_account][self.region]
        if f"mgn-{server.source_server_id}" in ec2.launch_template_name_to_ids:
            return
        with _next_id(moto_launch_templates, "random_launch_template_id", server.launch.launch_template_id):
            ec2.create_launch_template(f"mgn-{server.source_server_id}", "MGN launch template",
                                       {"InstanceType": server.launch.instance_type}, {})

    def add_mgn_groups(self) -> None:
        """The spec's MGN waves and applications, and the source servers they hold that MGN does not yet."""
        groups = self.spec.mgn
        for server_id in groups.server_ids():
            if server_id not in self.mgn.servers:
                self.add_source_server(server_id)
        waves = {name: self.mgn.add_wave(name, self.migration_account, self.region, wave_id=spec.id,
                                         archived=spec.archived) for name, spec in groups.waves.items()}
        for name, spec in groups.applications.items():
            wave = groups.wave_of(name)
            self.mgn.add_application(name, self.migration_account, self.region, application_id=spec.id,
                                     wave_id=waves[wave].wave_id if wave else None, archived=spec.archived,
                                     server_ids=list(spec.members))

    def add_target_account(self, account_id: str, targets: list[dict] | None = None, *,
                           agent_config_parameter: str = DEFAULT_AGENT_CONFIG_PARAMETER) -> None:
        """Everything the target stack and the landing zone give a target account, for these placements."""
        targets = targets or []
        if account_id not in self.target_accounts:
            self.target_accounts.append(account_id)
        # Target accounts have MGN too, with no source servers: a call there sees none.
        self.mgn.initialized_accounts.add(account_id)

        landing = self.spec.target_account(account_id)
        self._build_network(account_id, targets)
        profiles = {target.get("instanceProfile") or DEFAULT_INSTANCE_PROFILE for target in targets}
        for profile in sorted(profiles or {DEFAULT_INSTANCE_PROFILE}) if landing.instance_profiles else []:
            if profile not in landing.absent:
                self._build_instance_profile(account_id, profile)
        for key_id in sorted({target["kmsKeyId"] for target in targets if target.get("kmsKeyId")}):
            self.ensure_key(account_id, key_id)
        self._build_target_role(account_id, landing.role_trusts_account or self.migration_account)
        if landing.agent_config_parameter:
            self._put_agent_config(account_id, agent_config_parameter)
        self._break_landing_zone(account_id, landing)
        _set_vcpu_quota(account_id, self.region, landing.vcpu_quota)

    def _break_landing_zone(self, account_id: str, landing: TargetAccountSpec) -> None:
        """What the spec says this account's landing zone got wrong, made so after the request's placement was built."""
        ec2 = ec2_backends[account_id][self.region]
        for resource_id in landing.absent:
            if resource_id.startswith("subnet-") and resource_id in {subnet.id for subnet in ec2.describe_subnets()}:
                ec2.delete_subnet(resource_id)
            elif resource_id.startswith("sg-") and resource_id in {g.id for g in ec2.describe_security_groups()}:
                ec2.delete_security_group(group_id=resource_id)
        if landing.security_groups_elsewhere:
            other_vpc = ec2.create_vpc("172.31.0.0/16").id
            built = {group.id for group in ec2.describe_security_groups()}
            for group_id in landing.security_groups_elsewhere:
                if group_id in built:
                    ec2.delete_security_group(group_id=group_id)
                with _next_id(moto_security_groups, "random_security_group_id", group_id):
                    ec2.create_security_group(f"sandbox-{group_id}", "sandbox, another VPC", vpc_id=other_vpc)
        subnets = list(ec2.describe_subnets())
        for address in landing.taken_private_ips:
            subnet = next((s for s in subnets if ipaddress.ip_address(address) in ipaddress.ip_network(s.cidr_block)),
                          None)
            if subnet is None:
                raise WorldSpecError(f"taken private IP {address} is in none of account {account_id}'s subnets")
            self.client("ec2", account_id).create_network_interface(
                SubnetId=subnet.id, PrivateIpAddress=address, Description="held by a server the wave does not know")

    def ensure_key(self, account_id: str, key_id: str) -> str:
        """The ARN of the KMS key `key_id` names (alias, key id or ARN), created with that name if missing."""
        owner = key_id.split(":")[4] if key_id.startswith("arn:") else account_id
        existing = aws_rules.resolve_key(key_id, owner, self.region)
        if existing is not None:
            return existing.arn

        kms = kms_backends[owner][self.region]
        name = key_id.split(":", 5)[5] if key_id.startswith("arn:") else key_id
        key = kms.create_key(None, "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT", f"sandbox key {name}", None)
        if name.startswith("alias/"):
            kms.create_alias(key.id, name)
            return key.arn
        # A key named by id: give the new key that id, as the request expects it to exist.
        return _rekey(kms, key, name.removeprefix("key/"))

    # The world stands in for what the landing zone and the target stack created before the rehearsal, so
    # it writes to moto's backends directly: an order of magnitude faster than going through the API.

    def _build_network(self, account_id: str, targets: list[dict]) -> None:
        ec2 = ec2_backends[account_id][self.region]
        existing = {subnet.id: subnet.vpc_id for subnet in ec2.describe_subnets()}
        planned = plan_subnets(targets)
        wanted = {subnet: cidr for subnet, cidr in planned.items() if subnet not in existing}
        if wanted:
            blocks = plan_vpc(list(wanted.values()))
            vpc_id = ec2.create_vpc(str(blocks[0])).id
            for block in blocks[1:]:
                ec2.associate_vpc_cidr_block(vpc_id, str(block), False)
            for subnet_id, cidr in wanted.items():
                # NOTE: every subnet is in the region's first availability zone; requests do not name one.
                with _next_id(moto_subnets, "random_subnet_id", subnet_id):
                    ec2.create_subnet(vpc_id, str(cidr), availability_zone=f"{self.region}a")
        else:
            # Every subnet exists already (an earlier call built it): new groups go to its VPC.
            vpc_id = next((existing[subnet] for subnet in planned), None)

        groups = {group.id for group in ec2.describe_security_groups()}
        for group_id in dict.fromkeys(g for target in targets for g in target.get("securityGroupIds") or []):
            if group_id not in groups:
                with _next_id(moto_security_groups, "random_security_group_id", group_id):
                    ec2.create_security_group(f"sandbox-{group_id}", "sandbox", vpc_id=vpc_id)

    def _build_instance_profile(self, account_id: str, name: str) -> None:
        iam = iam_backends[account_id]["aws"]
        if name in iam.instance_profiles:
            return
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        iam.create_role(name, json.dumps(trust), "/", None, "role of restored instances", [], None)
        for policy in RESTORED_INSTANCE_POLICIES:
            _ensure_aws_managed_policy(account_id, policy)
            iam.attach_role_policy(f"arn:aws:iam::aws:policy/{policy}", name)
        iam.create_instance_profile(name, "/", [name])

    def _build_target_role(self, account_id: str, pipeline_account: str) -> None:
        """The role as templates/target-account.yaml defines it: its trust policy is the template's own."""
        iam = iam_backends[account_id]["aws"]
        if any(role.name == self.target_role_name for role in iam.roles.values()):
            return
        trust = target_role_trust(account_id, pipeline_account, self.pipeline_stack, self.external_id, self.region)
        iam.create_role(self.target_role_name, json.dumps(trust), "/", None, "assumed by the cutover pipeline", [],
                        None)

    def _put_agent_config(self, account_id: str, name: str) -> None:
        ssm = ssm_backends[account_id][self.region]
        ssm.put_parameter(name, "CloudWatch agent configuration", json.dumps(AGENT_CONFIG), "String", None, None,
                          True, [], "text", None, None)

    # --- access --------------------------------------------------------------------------------------------

    def client(self, service: str, account_id: str | None = None) -> Any:
        """A boto3 client acting in `account_id` (the migration account by default) with full rights."""
        account_id = account_id or self.migration_account
        key = (service, account_id)
        if key not in self._clients:
            # boto3's default session if there is one already (its models are loaded), else the world's own.
            session = boto3.DEFAULT_SESSION or _session()
            self._clients[key] = session.client(service, region_name=self.region, **self._credentials_for(account_id))
        return self._clients[key]

    def _credentials_for(self, account_id: str) -> dict:
        if account_id == self.migration_account:
            return {}
        if account_id not in self._credentials:
            credentials = self.client("sts").assume_role(
                RoleArn=f"arn:aws:iam::{account_id}:role/{_BUILDER_ROLE}", RoleSessionName="sandbox-world"
            )["Credentials"]
            self._credentials[account_id] = {
                "aws_access_key_id": credentials["AccessKeyId"],
                "aws_secret_access_key": credentials["SecretAccessKey"],
                "aws_session_token": credentials["SessionToken"],
            }
        return self._credentials[account_id]

    @property
    def accounts(self) -> list[str]:
        return [self.migration_account, *self.target_accounts]

    # --- inventory -----------------------------------------------------------------------------------------

    def inventory(self) -> dict:
        """What every account holds now, as plain JSON: instances, images, snapshots, grants, SSM commands, MGN."""
        return {
            "accounts": {account: self._account_inventory(account) for account in self.accounts},
            "mgn": {"sourceServers": [_server_inventory(server) for server in self.mgn.servers.values()]},
        }

    def _account_inventory(self, account_id: str) -> dict:
        ec2 = _existing(ec2_backends, account_id, self.region)
        kms = _existing(kms_backends, account_id, self.region)
        ssm = _existing(ssm_backends, account_id, self.region)
        return {
            "instances": [self._instance_inventory(ec2, i) for i in ec2.all_instances()] if ec2 else [],
            "images": [self._image_inventory(a) for a in ec2.amis.values() if a.owner_id == account_id] if ec2 else [],
            "snapshots": [self._snapshot_inventory(s) for s in ec2.snapshots.values() if s.owner_id == account_id]
            if ec2 else [],
            "kmsGrants": [_grant_inventory(key, grant) for key in kms.keys.values() for grant in key.grants.values()]
            if kms else [],
            "ssmCommands": [_command_inventory(command) for command in ssm._commands] if ssm else [],
        }

    def key_label(self, key_id: str | None) -> str | None:
        """How the inventory names a key: "aws/ebs" for the AWS managed EBS key, else its ARN; None if unencrypted."""
        if not key_id:
            return None
        return aws_rules.AWS_MANAGED_EBS_LABEL if aws_rules.is_aws_managed(key_id, self.region) else key_id

    def _instance_inventory(self, backend: Any, instance: Any) -> dict:
        volumes = [backend.volumes.get(mapping.volume_id) for _, mapping in instance.get_block_device_mapping]
        return {
            "id": instance.id,
            "state": instance.state,
            "subnet": instance.subnet_id,
            "type": instance.instance_type,
            "privateIp": instance.private_ip_address,
            "image": instance.image_id,
            "volumeKeys": [self.key_label(v.kms_key_id if v.encrypted else None) for v in volumes if v is not None],
            "tags": aws_rules.tags_of(instance),
        }

    def _image_inventory(self, ami: Any) -> dict:
        snapshots = aws_rules.image_snapshots(ami)
        return {
            "id": ami.id,
            "name": ami.name,
            "state": ami.state,
            "encrypted": bool(snapshots) and all(s.encrypted for s in snapshots),
            "keys": sorted({self.key_label(s.kms_key_id) for s in snapshots if s.encrypted}),
            "launchPermissions": sorted(p["UserId"] for p in ami.launch_permissions if "UserId" in p),
        }

    def _snapshot_inventory(self, snapshot: Any) -> dict:
        described = {
            "id": snapshot.id,
            "state": snapshot.status,
            "encrypted": bool(snapshot.encrypted),
            "key": self.key_label(snapshot.kms_key_id if snapshot.encrypted else None),
            "createVolumePermissions": sorted(snapshot.create_volume_permission_userids),
        }
        if snapshot.from_ami:
            described["image"] = snapshot.from_ami
        return described


@cache
def _session() -> boto3.Session:
    # One session for every world: a new one would load each service model again (tenths of a second a world).
    # It only ever talks to moto: a World refuses to be built outside the mock.
    return boto3.Session()


def _existing(backends: Any, account_id: str, region: str) -> Any:
    """A moto backend if the account has used the service there; None rather than creating one."""
    regions = dict.get(backends, account_id)
    return dict.get(regions, region) if regions is not None else None


def _set_vcpu_quota(account_id: str, region: str, vcpus: int) -> None:
    """moto's Service Quotas knows only VPC quotas: the account's EC2 vCPU quota is answered from the world."""
    from moto.servicequotas.models import servicequotas_backends

    backend = servicequotas_backends[account_id][region]
    quota = {"ServiceCode": "ec2", "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
             "QuotaArn": f"arn:aws:servicequotas:{region}:{account_id}:ec2/{VCPU_QUOTA_CODE}",
             "QuotaCode": VCPU_QUOTA_CODE,
             "QuotaName": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
             "Value": float(vcpus), "Unit": "None", "Adjustable": True, "GlobalQuota": False}
    moto_answer = type(backend).get_service_quota

    def get_service_quota(service_code: str, quota_code: str) -> dict:
        if (service_code, quota_code) == ("ec2", VCPU_QUOTA_CODE):
            return quota
        return moto_answer(backend, service_code, quota_code)

    # On this account's backend only; it goes with the backend when the mock ends.
    backend.get_service_quota = get_service_quota


def _grant_inventory(key: Any, grant: Any) -> dict:
    return {"keyId": key.arn, "grantId": grant.id, "grantee": grant.grantee_principal,
            "operations": list(grant.operations)}


def _command_inventory(command: Any) -> dict:
    return {"commandId": command.command_id, "document": command.document_name,
            "parameters": command.parameters, "instanceIds": sorted(command.instance_ids), "status": command.status}


def _server_inventory(server: mgn.SourceServer) -> dict:
    described = {"id": server.source_server_id, "lifeCycle": server.life_cycle, "replication": server.replication_state}
    if server.launched_instance_id:
        described["launchedInstance"] = server.launched_instance_id
    return described


def target_role_trust(account_id: str, pipeline_account: str, pipeline_stack: str, external_id: str,
                      region: str = REGION) -> dict:
    """The trust policy templates/target-account.yaml gives the target role, for these stack parameters."""
    template = cfn.load(cfn.TARGET_TEMPLATE)
    resolver = cfn.Resolver(template, {"PipelineAccountId": pipeline_account, "PipelineStackName": pipeline_stack,
                                       "ExternalId": external_id},
                            {"AWS::Region": region, "AWS::AccountId": account_id,
                             "AWS::StackName": "mgn-cutover-target"}, {})
    return resolver.resolve(template["Resources"]["TargetRole"]["Properties"]["AssumeRolePolicyDocument"])


# --- requests --------------------------------------------------------------------------------------------------


def request_body(request: dict) -> dict:
    """The request inside console input, a normalized request, or a "Cutover Requested" EventBridge event."""
    if not isinstance(request, dict):
        raise WorldSpecError("the request must be a JSON object")
    detail = request.get("detail")
    if isinstance(detail, dict) and "servers" in detail:
        return detail
    if request.get("source") == "aws.mgn":
        # NOTE: MGN's own launch result event names no target placement (it comes from source server tags
        # in production); build such a world with add_source_server and add_target_account instead.
        raise WorldSpecError("an MGN launch result event carries no placement to build a world from")
    if not isinstance(request.get("servers"), list) or not request["servers"]:
        raise WorldSpecError("the request names no servers")
    return request


def _targets_by_account(servers: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for server in servers:
        target = server.get("target")
        if isinstance(target, dict) and target.get("accountId"):
            grouped.setdefault(target["accountId"], []).append(target)
    return grouped


def _launch_console_jobs(world: World, servers: list[dict]) -> None:
    """Servers that name a launchJobId had their cutover launched in the MGN console before the request."""
    jobs: dict[str, list[str]] = {}
    for server in servers:
        if server.get("launchJobId"):
            jobs.setdefault(server["launchJobId"], []).append(server["sourceServerId"])
    for job_id, server_ids in jobs.items():
        world.mgn.start_console_cutover(server_ids, job_id)


# --- networks --------------------------------------------------------------------------------------------------


def plan_subnets(targets: list[dict]) -> dict[str, ipaddress.IPv4Network]:
    """A CIDR per requested subnet: the /24 (or wider) around its requested private IPs, else a free /24."""
    addresses: dict[str, list[ipaddress.IPv4Address]] = {}
    for target in targets:
        if not target.get("subnetId"):
            continue
        ips = addresses.setdefault(target["subnetId"], [])
        if target.get("privateIpAddress"):
            try:
                ips.append(ipaddress.IPv4Address(target["privateIpAddress"]))
            except ValueError:
                continue

    planned: dict[str, ipaddress.IPv4Network] = {}
    for subnet_id, ips in addresses.items():
        if ips:
            network = ipaddress.ip_network(f"{ips[0]}/24", strict=False)
            while not all(ip in network for ip in ips):
                network = network.supernet()
            _refuse_overlap(planned, subnet_id, network)
            planned[subnet_id] = network
    free = (n for n in _FIRST_FREE_NETWORK.subnets(new_prefix=24) if not any(n.overlaps(p) for p in planned.values()))
    for subnet_id, ips in addresses.items():
        if not ips:
            planned[subnet_id] = next(free)
    return planned


def _refuse_overlap(planned: dict, subnet_id: str, network: ipaddress.IPv4Network) -> None:
    for other_id, other in planned.items():
        if other.overlaps(network):
            raise WorldSpecError(f"subnets {other_id} and {subnet_id} would both need {network}: their private IPs "
                                 "are too close to tell them apart")


def plan_vpc(subnet_cidrs: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """The VPC's CIDR blocks: the /16 around each group of subnets, primary first (AWS allows 5)."""
    blocks: list[ipaddress.IPv4Network] = []
    for cidr in subnet_cidrs:
        if cidr.prefixlen < 16:
            raise WorldSpecError(f"{cidr} is wider than the /16 a VPC can hold")
        block = cidr.supernet(new_prefix=16)
        if block not in blocks:
            blocks.append(block)
    if len(blocks) > 5:
        raise WorldSpecError("the subnets of one account spread over more than the 5 CIDR blocks a VPC can hold")
    return blocks


@contextmanager
def _next_id(module: Any, generator: str, wanted: str) -> Iterator[None]:
    """Make moto's id generator hand out `wanted` once; EC2 in moto has no custom-id mechanism for this resource."""
    original = getattr(module, generator)
    setattr(module, generator, lambda: wanted)
    try:
        yield
    finally:
        setattr(module, generator, original)


def _rekey(kms: Any, key: Any, wanted_id: str) -> str:
    kms.keys.pop(key.id)
    key.id = wanted_id
    key.arn = f"arn:aws:kms:{key.region}:{key.account_id}:key/{wanted_id}"
    kms.keys[wanted_id] = key
    return key.arn


def _ensure_aws_managed_policy(account_id: str, name: str) -> None:
    """Give the account AWS's managed policy `name`; moto loads AWS managed policies only when asked to."""
    iam = iam_backends[account_id]["aws"]
    arn = f"arn:aws:iam::aws:policy/{name}"
    if arn not in iam.managed_policies:
        iam.managed_policies[arn] = AWSManagedPolicy.from_data(name, account_id, "us-east-1", _managed_policy(name))


@cache
def _managed_policy(name: str) -> dict:
    # Decoding moto's whole catalogue of AWS managed policies is slow; decode only the entry wanted.
    from moto.iam.aws_managed_policies import aws_managed_policies_data as catalogue

    start = catalogue.index("{", catalogue.index(json.dumps(name) + ":"))
    return json.JSONDecoder().raw_decode(catalogue, start)[0]
