"""A simulator of AWS Application Migration Service (MGN) for the rehearsal sandbox; moto has no MGN.

`install()` routes the MGN calls of every boto3 session created afterwards (and of boto3's default
session) to the active `MgnSimulator`: a handler for botocore's `before-send.mgn` event answers them
in REST-JSON before moto's catch-all stubber would answer 404. The caller's account comes from the
request's access key, the way moto maps the keys of assumed roles to accounts.

The simulator holds source servers and jobs. StartCutover moves a server from READY_FOR_CUTOVER to
CUTTING_OVER and creates a PENDING job; the job reports STARTED for `launch_seconds` of simulated time
(sandbox/clock.py), plus the time to convert its servers' disks at `conversion_mib_per_second`, then
COMPLETED, and at that moment the cutover instance is launched in moto's EC2 of the server's account, one volume per
replicated disk, encrypted under the server's replication key. FinalizeCutover
and ChangeServerLifeCycleState follow the lifecycle rules of the MGN API reference.

Waves and applications group the servers: ListWaves, ListApplications and DescribeSourceServers answer
with their filters (ids, archived or not, a wave's applications, an application's servers) and page their
answers by `maxResults` (default `page_size`) and `nextToken`.

NOTE: MGN's EventBridge events (launch results, lifecycle changes) are not emitted, replication servers and
staging disks do not exist in EC2, and error messages are worded like AWS's, not copied from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.handlers import BUILTIN_HANDLERS
from moto.core.botocore_stubber import MockRawResponse
from moto.iam.models import get_account_id_from
from moto.moto_api._internal import mock_random

from sandbox import aws_rules, clock

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
SOURCE_SERVER_TAG = "AWSApplicationMigrationServiceSourceServerID"

_EVENT = "before-send.mgn"
_HANDLER_ID = "sandbox-mgn-simulator"
_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")
_ALNUM = string.ascii_letters + string.digits

# Lifecycle states a server can be sent to with ChangeServerLifeCycleState, and from where.
_CHANGEABLE_FROM = {"READY_FOR_TEST", "TESTING", "READY_FOR_CUTOVER", "CUTTING_OVER"}


class MgnError(Exception):
    """An MGN error response: its code (the exception shape), HTTP status, message and modeled fields."""

    def __init__(self, code: str, status: int, message: str, **fields: Any):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status
        self.body = {"message": message, **{k: v for k, v in fields.items() if v is not None}}


def conflict(message: str, resource_id: str | None = None, resource_type: str | None = None) -> MgnError:
    return MgnError("ConflictException", 409, message, resourceId=resource_id, resourceType=resource_type)


def not_found(message: str, resource_id: str | None = None, resource_type: str | None = None) -> MgnError:
    return MgnError("ResourceNotFoundException", 404, message, resourceId=resource_id, resourceType=resource_type)


def invalid(message: str, reason: str = "other", fields: list[dict] | None = None) -> MgnError:
    return MgnError("ValidationException", 400, message, reason=reason, fieldList=fields)


def uninitialized(account_id: str) -> MgnError:
    # NOTE: the wording is the sandbox's own; AWS documents the error code, not its message.
    message = f"Application Migration Service is not initialized in account {account_id}"
    return MgnError("UninitializedAccountException", 400, message)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _random_id(prefix: str) -> str:
    return prefix + "".join(mock_random.choice(_ALNUM) for _ in range(17))


@dataclass
class LaunchSettings:
    """The parts of a server's launch configuration the simulator acts on."""

    instance_type: str = "t3.medium"
    subnet_id: str | None = None
    launch_disposition: str = "STARTED"
    copy_private_ip: bool = False
    copy_tags: bool = True
    boot_mode: str = "USE_SOURCE"
    os_byol: bool = False
    launch_template_id: str = field(default_factory=lambda: "lt-" + uuid.uuid4().hex[:17])


@dataclass
class SourceServer:
    """A replicating source server, as MGN keeps it in the account that replicates it."""

    source_server_id: str
    account_id: str
    region: str
    hostname: str
    disks_gib: list[int]
    replication_key_arn: str | None
    tags: dict[str, str]
    launch: LaunchSettings
    life_cycle: str = "READY_FOR_CUTOVER"
    replication_state: str = "CONTINUOUS"
    # How far replication lags behind the source (MGN's lagDuration); a world sets it with the state.
    replication_lag_seconds: int = 0
    launch_fails: bool = False
    is_archived: bool = False
    application_id: str | None = None
    launched_instance_id: str | None = None
    launched_job_id: str | None = None
    last_cutover: dict[str, dict] = field(default_factory=dict)
    added: str = field(default_factory=_now)

    @property
    def arn(self) -> str:
        return f"arn:aws:mgn:{self.region}:{self.account_id}:source-server/{self.source_server_id}"

    def device_names(self) -> list[str]:
        return ["/dev/sda1"] + [f"/dev/sd{chr(ord('b') + index)}" for index in range(len(self.disks_gib) - 1)]


@dataclass
class Wave:
    """An MGN wave: a group of applications cut over together."""

    wave_id: str
    name: str
    account_id: str
    region: str
    is_archived: bool = False
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=_now)

    @property
    def arn(self) -> str:
        return f"arn:aws:mgn:{self.region}:{self.account_id}:wave/{self.wave_id}"


@dataclass
class Application:
    """An MGN application: a group of source servers, in at most one wave."""

    application_id: str
    name: str
    account_id: str
    region: str
    wave_id: str | None = None
    is_archived: bool = False
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=_now)

    @property
    def arn(self) -> str:
        return f"arn:aws:mgn:{self.region}:{self.account_id}:application/{self.application_id}"


@dataclass
class Participant:
    source_server_id: str
    launch_status: str = "PENDING"
    instance_id: str | None = None
    ssm_discovered: str | None = None


@dataclass
class Job:
    """A launch job; it reports STARTED until `ready_at` on the world's clock."""

    job_id: str
    account_id: str
    region: str
    participants: list[Participant]
    tags: dict[str, str]
    ready_at: float
    status: str = "PENDING"
    created: str = field(default_factory=_now)
    ended: str | None = None
    log: list[dict] = field(default_factory=list)

    @property
    def arn(self) -> str:
        return f"arn:aws:mgn:{self.region}:{self.account_id}:job/{self.job_id}"

    @property
    def active(self) -> bool:
        return self.status != "COMPLETED"

    def record(self, event: str, **data: Any) -> None:
        self.log.append({"logDateTime": _now(), "event": event, "eventData": data})


Launcher = Callable[[SourceServer, Job], str]


class MgnSimulator:
    """The MGN state of one sandbox world: source servers, jobs, and the accounts MGN is initialized in."""

    def __init__(self, launch_seconds: float = 0.0, initialized_accounts: set[str] | None = None,
                 launcher: Launcher | None = None, conversion_mib_per_second: float = 0.0):
        # The world's speed: a launch job's fixed part, and the rate MGN converts its servers' disks at.
        self.launch_seconds = launch_seconds
        self.conversion_mib_per_second = conversion_mib_per_second
        self.initialized_accounts = set(initialized_accounts or {DEFAULT_ACCOUNT})
        self.servers: dict[str, SourceServer] = {}
        self.jobs: dict[str, Job] = {}
        self.waves: dict[str, Wave] = {}
        self.applications: dict[str, Application] = {}
        # Items per page of a list answer when the call gives no maxResults.
        self.page_size = 1000
        self._launch = launcher or launch_cutover_instance
        self._lock = threading.RLock()

    # --- building the world --------------------------------------------------------------------------------

    def add_source_server(self, source_server_id: str, account_id: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION,
                          *, hostname: str | None = None, disks_gib: list[int] | None = None,
                          replication_key_arn: str | None = None, tags: dict[str, str] | None = None,
                          launch: LaunchSettings | None = None, life_cycle: str = "READY_FOR_CUTOVER",
                          launch_fails: bool = False) -> SourceServer:
        """Add a server replicating healthily; `replication_key_arn` None means the account's aws/ebs key."""
        server = SourceServer(
            source_server_id=source_server_id,
            account_id=account_id,
            region=region,
            hostname=hostname or f"host-{source_server_id[-6:].lower()}",
            disks_gib=list(disks_gib or [8]),
            replication_key_arn=replication_key_arn,
            tags=dict(tags or {}),
            launch=launch or LaunchSettings(),
            life_cycle=life_cycle,
            launch_fails=launch_fails,
        )
        self.initialized_accounts.add(account_id)
        self.servers[source_server_id] = server
        return server

    def add_wave(self, name: str, account_id: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION, *,
                 wave_id: str | None = None, archived: bool = False) -> Wave:
        """A wave named `name`; its id is derived from the name unless given, so a world keeps its ids."""
        wave = Wave(wave_id or stable_id("wave-", account_id, name), name, account_id, region, archived)
        self.initialized_accounts.add(account_id)
        self.waves[wave.wave_id] = wave
        return wave

    def add_application(self, name: str, account_id: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION, *,
                        application_id: str | None = None, wave_id: str | None = None, archived: bool = False,
                        server_ids: list[str] | None = None) -> Application:
        """An application of these source servers (which leave any application they were in), in `wave_id`."""
        if wave_id is not None and wave_id not in self.waves:
            raise ValueError(f"no wave {wave_id} to put application {name!r} in")
        application = Application(application_id or stable_id("app-", account_id, name), name, account_id, region,
                                  wave_id, archived)
        for server_id in server_ids or []:
            if self._find_server(account_id, server_id) is None:
                raise ValueError(f"application {name!r} names source server {server_id}, which MGN does not hold")
            self.servers[server_id].application_id = application.application_id
        self.initialized_accounts.add(account_id)
        self.applications[application.application_id] = application
        return application

    # --- dispatch ------------------------------------------------------------------------------------------

    def handle(self, operation: str, account_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Answer one MGN operation for `account_id`; raise MgnError for an error response."""
        method = getattr(self, "op_" + _snake(operation), None)
        if method is None:
            # NOTE: only the operations the pipeline calls are simulated.
            raise invalid(f"The sandbox does not simulate MGN {operation}", reason="unknownOperation")
        asked_for = params.get("accountID")
        if asked_for and asked_for != account_id:
            # NOTE: MGN global view (acting on another account of the organization) is not simulated.
            raise invalid(f"accountID {asked_for} is not the calling account", fields=[{"name": "accountID"}])
        # The tagging calls have no UninitializedAccountException in their model; they report a missing resource.
        if operation not in ("ListTagsForResource", "TagResource") and account_id not in self.initialized_accounts:
            raise uninitialized(account_id)
        with self._lock:
            return method(account_id, params)

    # --- operations ----------------------------------------------------------------------------------------

    def op_start_cutover(self, account_id: str, params: dict) -> dict:
        ids = params.get("sourceServerIDs") or []
        if not 1 <= len(ids) <= 200:
            raise invalid("sourceServerIDs must name 1 to 200 source servers", "fieldValidationFailed",
                          [{"name": "sourceServerIDs", "message": "length must be between 1 and 200"}])
        servers = [self._server_for_launch(account_id, server_id) for server_id in dict.fromkeys(ids)]
        job = self._start_job(servers, dict(params.get("tags") or {}))
        return {"job": self._describe_job(job)}

    def start_console_cutover(self, source_server_ids: list[str], job_id: str | None = None) -> Job:
        """A cutover someone launched in the MGN console, already finished: what MGN's launch result event reports."""
        with self._lock:
            servers = [self._server_for_launch(self.servers[i].account_id, i) for i in source_server_ids]
            job = self._start_job(servers, {}, job_id)
            job.ready_at = clock.now()
            self._advance(job)
            return job

    def _start_job(self, servers: list[SourceServer], tags: dict[str, str], job_id: str | None = None) -> Job:
        gib = sum(sum(server.disks_gib) for server in servers)
        start = clock.now()
        ready_at = start + self.launch_seconds + aws_rules.transfer_seconds(gib, self.conversion_mib_per_second)
        job = Job(job_id or _random_id("mgnjob-"), servers[0].account_id, servers[0].region,
                  [Participant(server.source_server_id) for server in servers], tags, ready_at)
        for server in servers:
            clock.active().record(server.source_server_id, "MGN cutover launch", start, ready_at)
        job.record("JOB_START")
        for server in servers:
            server.life_cycle = "CUTTING_OVER"
            server.last_cutover = {"initiated": {"apiCallDateTime": _now(), "jobID": job.job_id}}
        self.jobs[job.job_id] = job
        return job

    def _server_for_launch(self, account_id: str, server_id: str) -> SourceServer:
        server = self._find_server(account_id, server_id)
        if server is None:
            # NOTE: StartCutover's model names no not-found error; the sandbox reports a validation error.
            raise invalid(f"Source server {server_id} does not exist", "fieldValidationFailed",
                          [{"name": "sourceServerIDs", "message": f"{server_id} not found"}])
        running = self._active_job_of(server_id)
        if running is not None:
            raise conflict(f"Source server {server_id} is already participating in active job {running.job_id}",
                           server_id, "SOURCE_SERVER")
        if server.life_cycle != "READY_FOR_CUTOVER":
            raise conflict(
                f"Cannot start cutover for source server {server_id}: lifecycle state is {server.life_cycle}, "
                "expected READY_FOR_CUTOVER",
                server_id,
                "SOURCE_SERVER",
            )
        return server

    def op_describe_jobs(self, account_id: str, params: dict) -> dict:
        # NOTE: only DescribeJobs moves a job on (not DescribeSourceServers), and fromDate/toDate are ignored.
        wanted = (params.get("filters") or {}).get("jobIDs") or []
        jobs = [job for job in self.jobs.values()
                if job.account_id == account_id and (not wanted or job.job_id in wanted)]
        for job in jobs:
            self._advance(job)
        return _page([self._describe_job(job) for job in jobs], params)

    def op_describe_job_log_items(self, account_id: str, params: dict) -> dict:
        job = self.jobs.get(params.get("jobID", ""))
        # NOTE: an unknown job gives an empty log; AWS documents no not-found error for this call.
        items = list(job.log) if job is not None and job.account_id == account_id else []
        return _page(items, params)

    def op_describe_source_servers(self, account_id: str, params: dict) -> dict:
        filters = _checked_filters(params, ("sourceServerIDs", "applicationIDs"))
        servers = [
            server for server in self.servers.values() if server.account_id == account_id and _matches(server, filters)
        ]
        return _page([self._describe_server(server) for server in servers], params, self.page_size)

    def op_list_waves(self, account_id: str, params: dict) -> dict:
        filters = _checked_filters(params, ("waveIDs",))
        waves = [wave for wave in self.waves.values() if wave.account_id == account_id
                 and _wanted(filters, "waveIDs", wave.wave_id) and _archived_as(filters, wave.is_archived)]
        return _page([self._describe_wave(wave) for wave in waves], params, self.page_size)

    def op_list_applications(self, account_id: str, params: dict) -> dict:
        filters = _checked_filters(params, ("applicationIDs", "waveIDs"))
        applications = [
            application for application in self.applications.values()
            if application.account_id == account_id and _wanted(filters, "applicationIDs", application.application_id)
            and _wanted(filters, "waveIDs", application.wave_id) and _archived_as(filters, application.is_archived)
        ]
        return _page([self._describe_application(a) for a in applications], params, self.page_size)

    def op_finalize_cutover(self, account_id: str, params: dict) -> dict:
        server = self._server(account_id, params.get("sourceServerID", ""))
        self._require_finalizable(server)
        self._finalize(server)
        return self._describe_server(server)

    def op_change_server_life_cycle_state(self, account_id: str, params: dict) -> dict:
        server = self._server(account_id, params.get("sourceServerID", ""))
        target = (params.get("lifeCycle") or {}).get("state")
        if target not in ("READY_FOR_TEST", "READY_FOR_CUTOVER", "CUTOVER"):
            raise invalid(f"lifeCycle.state {target} is not one of READY_FOR_TEST, READY_FOR_CUTOVER, CUTOVER",
                          "fieldValidationFailed", [{"name": "lifeCycle.state"}])
        if target == "CUTOVER":
            self._require_finalizable(server)
            self._finalize(server)
            return self._describe_server(server)

        running = self._active_job_of(server.source_server_id)
        if running is not None:
            raise conflict(f"Source server {server.source_server_id} has an active job {running.job_id}",
                           server.source_server_id, "SOURCE_SERVER")
        if server.life_cycle not in _CHANGEABLE_FROM:
            raise conflict(f"Cannot change lifecycle state of source server {server.source_server_id} from "
                           f"{server.life_cycle} to {target}", server.source_server_id, "SOURCE_SERVER")
        if server.life_cycle == "CUTTING_OVER":
            server.last_cutover.setdefault("reverted", {})["apiCallDateTime"] = _now()
        server.life_cycle = target
        return self._describe_server(server)

    def op_get_replication_configuration(self, account_id: str, params: dict) -> dict:
        """The replication settings the preflight reads: the EBS key the replicated volumes are under."""
        server = self._server(account_id, params.get("sourceServerID", ""))
        configuration = {"sourceServerID": server.source_server_id, "name": server.hostname,
                         "ebsEncryption": "CUSTOM" if server.replication_key_arn else "DEFAULT",
                         "dataPlaneRouting": "PRIVATE_IP", "defaultLargeStagingDiskType": "GP3"}
        if server.replication_key_arn:
            configuration["ebsEncryptionKeyArn"] = server.replication_key_arn
        return configuration

    def op_get_launch_configuration(self, account_id: str, params: dict) -> dict:
        server = self._server(account_id, params.get("sourceServerID", ""))
        launch = server.launch
        return {
            "sourceServerID": server.source_server_id,
            "name": server.hostname,
            "ec2LaunchTemplateID": launch.launch_template_id,
            "launchDisposition": launch.launch_disposition,
            "targetInstanceTypeRightSizingMethod": "NONE",
            "copyPrivateIp": launch.copy_private_ip,
            "copyTags": launch.copy_tags,
            "licensing": {"osByol": launch.os_byol},
            "bootMode": launch.boot_mode,
            "postLaunchActions": {"deployment": "TEST_AND_CUTOVER", "ssmDocuments": []},
            "enableMapAutoTagging": False,
        }

    def op_list_tags_for_resource(self, account_id: str, params: dict) -> dict:
        return {"tags": dict(self._tagged(account_id, params.get("resourceArn", "")))}

    def op_tag_resource(self, account_id: str, params: dict) -> dict:
        self._tagged(account_id, params.get("resourceArn", "")).update(params.get("tags") or {})
        return {}

    # --- lifecycle -----------------------------------------------------------------------------------------

    def _advance(self, job: Job) -> None:
        """One DescribeJobs call that includes the job."""
        if not job.active:
            return
        if clock.now() < job.ready_at:
            if job.status == "PENDING":
                job.status = "STARTED"
                for participant in job.participants:
                    participant.launch_status = "IN_PROGRESS"
                    job.record("SNAPSHOT_START", sourceServerID=participant.source_server_id)
            return
        for participant in job.participants:
            if participant.launch_status == "PENDING":
                job.record("SNAPSHOT_START", sourceServerID=participant.source_server_id)
            for event in ("SNAPSHOT_END", "CONVERSION_START", "CONVERSION_END"):
                job.record(event, sourceServerID=participant.source_server_id)
            self._launch_one(job, participant)
        job.status = "COMPLETED"
        job.ended = _now()
        job.record("JOB_END")

    def _launch_one(self, job: Job, participant: Participant) -> None:
        server = self.servers[participant.source_server_id]
        job.record("LAUNCH_START", sourceServerID=server.source_server_id)
        if server.launch_fails:
            participant.launch_status = "FAILED"
            server.life_cycle = "READY_FOR_CUTOVER"
            job.record("LAUNCH_FAILED", sourceServerID=server.source_server_id,
                       rawError="The sandbox world makes this server's launch fail")
            return
        participant.instance_id = self._launch(server, job)
        participant.launch_status = "LAUNCHED"
        participant.ssm_discovered = _now()
        server.launched_instance_id = participant.instance_id
        server.launched_job_id = job.job_id

    def _require_finalizable(self, server: SourceServer) -> None:
        running = self._active_job_of(server.source_server_id)
        if server.life_cycle != "CUTTING_OVER" or server.launched_instance_id is None or running is not None:
            raise conflict(
                f"Cannot finalize cutover for source server {server.source_server_id}: lifecycle state is "
                f"{server.life_cycle}" + (", a launch job is running" if running else "")
                + ("" if server.launched_instance_id else ", no cutover instance was launched"),
                server.source_server_id,
                "SOURCE_SERVER",
            )

    def _finalize(self, server: SourceServer) -> None:
        # As the API reference says: replication disconnects and the launched instance is left running.
        server.life_cycle = "CUTOVER"
        server.replication_state = "DISCONNECTED"
        server.last_cutover.setdefault("finalized", {})["apiCallDateTime"] = _now()

    def _active_job_of(self, server_id: str) -> Job | None:
        return next(
            (job for job in self.jobs.values() if job.active and any(
                p.source_server_id == server_id for p in job.participants)),
            None,
        )

    # --- lookups and views ---------------------------------------------------------------------------------

    def _find_server(self, account_id: str, server_id: str) -> SourceServer | None:
        server = self.servers.get(server_id)
        return server if server is not None and server.account_id == account_id else None

    def _server(self, account_id: str, server_id: str) -> SourceServer:
        server = self._find_server(account_id, server_id)
        if server is None:
            raise not_found("Source server not found", server_id, "SOURCE_SERVER")
        return server

    def _tagged(self, account_id: str, arn: str) -> dict[str, str]:
        for resource in [*self.servers.values(), *self.jobs.values(), *self.waves.values(),
                         *self.applications.values()]:
            if resource.arn == arn and resource.account_id == account_id:
                return resource.tags
        raise not_found(f"Resource {arn} not found", arn)

    def _describe_job(self, job: Job) -> dict:
        described = {
            "jobID": job.job_id,
            "arn": job.arn,
            "type": "LAUNCH",
            "initiatedBy": "START_CUTOVER",
            "creationDateTime": job.created,
            "status": job.status,
            "participatingServers": [_describe_participant(p) for p in job.participants],
            "tags": dict(job.tags),
        }
        if job.ended:
            described["endDateTime"] = job.ended
        return described

    def _describe_server(self, server: SourceServer) -> dict:
        described = {
            "sourceServerID": server.source_server_id,
            "arn": server.arn,
            "isArchived": server.is_archived,
            "tags": dict(server.tags),
            "dataReplicationInfo": _replication_info(server),
            "lifeCycle": {
                "addedToServiceDateTime": server.added,
                "firstByteDateTime": server.added,
                "elapsedReplicationDuration": "PT72H",
                "lastSeenByServiceDateTime": _now(),
                "lastCutover": server.last_cutover,
                "state": server.life_cycle,
            },
            "sourceProperties": _source_properties(server),
            "replicationType": "AGENT_BASED",
        }
        if server.application_id:
            described["applicationID"] = server.application_id
        if server.launched_instance_id:
            described["launchedInstance"] = {
                "ec2InstanceID": server.launched_instance_id,
                "jobID": server.launched_job_id,
                "firstBoot": "SUCCEEDED",
            }
        return described

    # NOTE: the aggregated statuses are fixed (NOT_STARTED, HEALTHY): MGN derives them from the servers' progress,
    # and the pipeline reads no status of a wave or application, only their ids, names and archival state.
    def _describe_wave(self, wave: Wave) -> dict:
        applications = [a for a in self.applications.values() if a.wave_id == wave.wave_id and not a.is_archived]
        return {"waveID": wave.wave_id, "arn": wave.arn, "name": wave.name, "description": wave.description,
                "isArchived": wave.is_archived, "tags": dict(wave.tags), "creationDateTime": wave.created,
                "lastModifiedDateTime": wave.created,
                "waveAggregatedStatus": {"totalApplications": len(applications), "progressStatus": "NOT_STARTED",
                                         "healthStatus": "HEALTHY"}}

    def _describe_application(self, application: Application) -> dict:
        servers = [s for s in self.servers.values() if s.application_id == application.application_id]
        described = {"applicationID": application.application_id, "arn": application.arn, "name": application.name,
                     "description": application.description, "isArchived": application.is_archived,
                     "tags": dict(application.tags), "creationDateTime": application.created,
                     "lastModifiedDateTime": application.created,
                     "applicationAggregatedStatus": {"totalSourceServers": len(servers),
                                                     "progressStatus": "NOT_STARTED", "healthStatus": "HEALTHY"}}
        if application.wave_id:
            described["waveID"] = application.wave_id
        return described


def _describe_participant(participant: Participant) -> dict:
    described: dict[str, Any] = {"sourceServerID": participant.source_server_id,
                                 "launchStatus": participant.launch_status}
    if participant.instance_id:
        described["launchedEc2InstanceID"] = participant.instance_id
    if participant.ssm_discovered:
        described["postLaunchActionsStatus"] = {
            "ssmAgentDiscoveryDatetime": participant.ssm_discovered,
            "postLaunchActionsLaunchStatusList": [],
        }
    return described


def _replication_info(server: SourceServer) -> dict:
    disconnected = server.replication_state == "DISCONNECTED"
    info = {
        "dataReplicationState": server.replication_state,
        "replicatedDisks": [
            {
                "deviceName": device,
                # Finalizing zeroes the totals and drops the lag, as the API reference describes.
                "totalStorageBytes": 0 if disconnected else size * 2**30,
                "replicatedStorageBytes": 0 if disconnected else size * 2**30,
                "rescannedStorageBytes": 0,
                "backloggedStorageBytes": 0,
            }
            for device, size in zip(server.device_names(), server.disks_gib)
        ],
        "lastSnapshotDateTime": server.added,
    }
    if not disconnected:
        info["lagDuration"] = f"PT{server.replication_lag_seconds}S"
    if server.replication_state == "STALLED":
        # NOTE: the sandbox names one cause for every stall; MGN names the one it saw.
        info["dataReplicationError"] = {"error": "UNSTABLE_NETWORK",
                                        "rawError": "The sandbox world makes this server's replication stall"}
    return info


def _source_properties(server: SourceServer) -> dict:
    return {
        "lastUpdatedDateTime": server.added,
        "recommendedInstanceType": server.launch.instance_type,
        "identificationHints": {"hostname": server.hostname, "fqdn": f"{server.hostname}.corp.example"},
        "disks": [{"deviceName": d, "bytes": s * 2**30} for d, s in zip(server.device_names(), server.disks_gib)],
        "cpus": [{"cores": 2, "modelName": "Intel(R) Xeon(R) CPU"}],
        "ramBytes": 4 * 2**30,
        "os": {"fullString": "Linux"},
    }


def _matches(server: SourceServer, filters: dict) -> bool:
    checks = [
        ("sourceServerIDs", lambda ids: server.source_server_id in ids),
        ("lifeCycleStates", lambda states: server.life_cycle in states),
        ("replicationTypes", lambda types: "AGENT_BASED" in types),
        ("applicationIDs", lambda ids: server.application_id in ids),
    ]
    if "isArchived" in filters and filters["isArchived"] != server.is_archived:
        return False
    return all(check(filters[name]) for name, check in checks if filters.get(name))


def _checked_filters(params: dict, id_lists: tuple[str, ...]) -> dict:
    """The call's filters, refused as MGN refuses them: an id list holds at most 200 ids."""
    filters = params.get("filters") or {}
    for name in id_lists:
        if len(filters.get(name) or []) > 200:
            raise invalid(f"filters.{name} must hold at most 200 ids", "fieldValidationFailed",
                          [{"name": f"filters.{name}", "message": "length must be between 0 and 200"}])
    return filters


def _wanted(filters: dict, name: str, value: str | None) -> bool:
    # An absent or empty id filter lets everything through, as MGN's list filters do.
    return not filters.get(name) or value in filters[name]


def _archived_as(filters: dict, archived: bool) -> bool:
    return "isArchived" not in filters or filters["isArchived"] == archived


def stable_id(prefix: str, account_id: str, name: str) -> str:
    """An MGN-shaped id (`wave-`/`app-` and 17 characters) that stays the same for the same account and name."""
    return prefix + hashlib.sha256(f"{account_id}/{name}".encode()).hexdigest()[:17]


def _page(items: list, params: dict, default_size: int = 1000) -> dict:
    start = int(params.get("nextToken") or 0)
    size = int(params.get("maxResults") or default_size)
    page: dict[str, Any] = {"items": items[start:start + size]}
    if start + size < len(items):
        page["nextToken"] = str(start + size)
    return page


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


# --- the cutover instance in EC2 -------------------------------------------------------------------------------


def launch_cutover_instance(server: SourceServer, job: Job) -> str:
    """Launch the server's cutover instance in moto's EC2, straight on the backend (no HTTP call from here)."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[server.account_id][server.region]
    previous = server.launched_instance_id
    if previous and any(i.id == previous and i.state != "terminated" for i in backend.all_instances()):
        # A new launch replaces the instance an earlier one left behind, as MGN does.
        backend.terminate_instances([previous])

    key = server.replication_key_arn or backend._create_default_encryption_key()
    mappings = [
        {"DeviceName": device, "Ebs": {"VolumeSize": size, "VolumeType": "gp3", "DeleteOnTermination": True,
                                       "Encrypted": True, "KmsKeyId": key, "SnapshotId": None}}
        for device, size in zip(server.device_names(), server.disks_gib)
    ]
    instance_tags = {SOURCE_SERVER_TAG: server.source_server_id, "Name": server.hostname}
    if server.launch.copy_tags:
        instance_tags = {**server.tags, **instance_tags}
    with aws_rules.launched_by_service():
        reservation = _run_cutover_instance(backend, server, mappings, instance_tags)
    instance = reservation.instances[0]
    if server.launch.launch_disposition == "STOPPED":
        backend.stop_instances([instance.id])
    return instance.id


def _run_cutover_instance(backend: Any, server: SourceServer, mappings: list[dict], instance_tags: dict) -> Any:
    return backend.run_instances(
        # NOTE: MGN launches from an image of its own that the account cannot describe; so does the sandbox.
        "ami-" + uuid.uuid4().hex[:17],
        1,
        None,
        [],
        instance_type=server.launch.instance_type,
        is_instance_type_default=False,
        region_name=server.region,
        subnet_id=server.launch.subnet_id or _default_subnet(backend),
        tags={"instance": instance_tags, "volume": {SOURCE_SERVER_TAG: server.source_server_id}},
        block_device_mappings=mappings,
    )


def _default_subnet(backend: Any) -> str:
    for subnets in backend.subnets.values():
        for subnet in subnets.values():
            if subnet.default_for_az:
                return subnet.id
    raise RuntimeError("the migration account has no default subnet for the cutover instance")


# --- wiring into botocore --------------------------------------------------------------------------------------

_state_lock = threading.Lock()
_active: MgnSimulator | None = None


def install(simulator: MgnSimulator | None = None) -> MgnSimulator:
    """Route MGN calls to `simulator` (or the active one, or a new one) and return it; safe to call again."""
    global _active
    with _state_lock:
        if (_EVENT, _dispatch) not in BUILTIN_HANDLERS:
            BUILTIN_HANDLERS.append((_EVENT, _dispatch))
        # boto3's default session may have been created before the handler list changed.
        if boto3.DEFAULT_SESSION is not None:
            boto3.DEFAULT_SESSION.events.register(_EVENT, _dispatch, unique_id=_HANDLER_ID)
        if simulator is not None:
            _active = simulator
        elif _active is None:
            _active = MgnSimulator()
        return _active


def uninstall() -> None:
    """Stop answering MGN calls; sessions created while installed let their calls through to moto again."""
    global _active
    with _state_lock:
        while (_EVENT, _dispatch) in BUILTIN_HANDLERS:
            BUILTIN_HANDLERS.remove((_EVENT, _dispatch))
        if boto3.DEFAULT_SESSION is not None:
            boto3.DEFAULT_SESSION.events.unregister(_EVENT, _dispatch, unique_id=_HANDLER_ID)
        _active = None


def active() -> MgnSimulator | None:
    return _active


def _dispatch(request: AWSPreparedRequest, event_name: str = "", **_: Any) -> AWSResponse | None:
    simulator = _active
    if simulator is None:
        return None
    operation = event_name.rsplit(".", 1)[-1]
    try:
        body = simulator.handle(operation, caller_account(request), _params(request))
    except MgnError as err:
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": err.code}
        return _response(request, err.status, headers, err.body)
    status = 202 if operation == "StartCutover" else 200
    return _response(request, status, {"Content-Type": "application/json"}, body)


def _response(request: AWSPreparedRequest, status: int, headers: dict, body: dict) -> AWSResponse:
    headers = {**headers, "x-amzn-RequestId": str(uuid.uuid4())}
    return AWSResponse(request.url, status, headers, MockRawResponse(json.dumps(body)))


def _params(request: AWSPreparedRequest) -> dict:
    raw = request.body or b"{}"
    params = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw not in (b"", "") else {}
    path = urlsplit(request.url).path
    if path.startswith("/tags/"):
        params["resourceArn"] = unquote(path.removeprefix("/tags/"))
    return params


def caller_account(request: AWSPreparedRequest) -> str:
    """The account a request acts in, decided the way moto decides it for its own services."""
    if os.environ.get("MOTO_ACCOUNT_ID"):
        return os.environ["MOTO_ACCOUNT_ID"]
    override = request.headers.get("x-moto-account-id")
    if override:
        return override.decode() if isinstance(override, bytes) else override
    authorization = request.headers.get("Authorization") or b""
    match = _CREDENTIAL.search(authorization.decode() if isinstance(authorization, bytes) else authorization)
    return get_account_id_from(match.group(1)) if match else DEFAULT_ACCOUNT
