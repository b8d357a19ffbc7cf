"""The operator's commands, each written once against boto3 clients of one session.

On AWS the session is the operator's (a profile, a region); inside a `sandbox.runner.Sandbox`
it is the default session, which reaches the simulated accounts. Each command writes what it
found to `Context.out` and returns its exit code.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Callable

from botocore.exceptions import ClientError

from mgncutover.history import HistoryReader
from mgncutover.progress import Wave, report_lines
from mgncutover.stack import Stack
from mgncutover.watch import JSON, PLAIN, TTY, Watch, follow

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNNING = 3
EXIT_REFUSED = 4

# Ledger artifacts that are things in an account (the rest record facts: a job id, a command id).
# What a finalized cutover restored is kept whatever happens: it is the server now.
ARTIFACTS = {
    "image": ("cutover image", "migration"),
    "sharedImage": ("sharing copy", "migration"),
    "grant": ("grant on the sharing key", "migration"),
    "sharedWith": ("image and snapshots shared with", "target"),
    "cutoverInstance": ("cutover instance", "migration"),
    "targetImage": ("target image", "target"),
    "restoredInstance": ("restored instance", "target"),
}
KEPT_AFTER_FINALIZE = ("targetImage", "restoredInstance")
SCHEDULE_TIME = "%Y-%m-%dT%H:%M:%S"


class UsageError(Exception):
    """Bad input or a command that cannot run as asked: exit 2, nothing was changed."""


@dataclass
class Context:
    session: Any
    stack: Stack
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    json: bool = False
    # What "now" is to `watch`: the wall clock on AWS, the simulated clock in the sandbox, whose
    # execution histories carry simulated time.
    clock: Callable[[], float] = time.time

    def client(self, service: str):
        return self.session.client(service)

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def emit(self, body: Any) -> None:
        self.out.write(json.dumps(body, indent=2, default=str) + "\n")


# -- requests and executions -------------------------------------------------------------------------------------


def canonical_json(request: Any) -> str:
    """The request as one byte-exact text: sorted keys, no spaces. The name hashes it; it is the input."""
    return json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def execution_name(request: dict) -> str:
    """`<wave>-<first 16 hex of sha256(canonical JSON)>`: one request, one name, one execution."""
    digest = hashlib.sha256(canonical_json(request).encode()).hexdigest()[:16]
    return f"{request.get('wave') or 'wave'}-{digest}"


def validated(request: Any) -> dict:
    """The request, checked as the state machine's first state will check it; UsageError naming the field."""
    from pipeline.errors import RequestInvalid
    from pipeline.request import parse_request

    try:
        parse_request(request)
    except RequestInvalid as err:
        raise UsageError(f"bad request: {err}") from None
    return request


def start_execution(ctx: Context, request: dict, name: str | None = None) -> tuple[str, bool]:
    """Start the request's execution; (ARN, False) when that execution exists already.

    AWS answers StartExecution with the same name and input as a running execution with that
    execution; once it ended, with ExecutionAlreadyExists. Either way it is the same execution.
    """
    name, body = name or execution_name(request), canonical_json(request)
    sfn = ctx.client("stepfunctions")
    arn = ctx.stack.execution_arn(name)
    # Looked up first only to say so: StartExecution alone would answer the same either way.
    if _existing(sfn, arn, body):
        return arn, False
    try:
        return sfn.start_execution(stateMachineArn=ctx.stack.state_machine_arn, name=name, input=body)[
            "executionArn"], True
    except ClientError as err:
        # Started in between by someone else: the same request, so the same execution.
        if err.response["Error"]["Code"] == "ExecutionAlreadyExists" and _existing(sfn, arn, body):
            return arn, False
        raise


def _existing(sfn: Any, arn: str, body: str) -> bool:
    try:
        existing = sfn.describe_execution(executionArn=arn)
    except ClientError as err:
        if err.response["Error"]["Code"] == "ExecutionDoesNotExist":
            return False
        raise
    if canonical_json(json.loads(existing.get("input") or "null")) != body:
        raise UsageError(f"execution {arn.rsplit(':', 1)[1]} exists with another input; nothing was started")
    return True


def exit_code(status: str) -> int:
    if status == "SUCCEEDED":
        return EXIT_OK
    return EXIT_RUNNING if status == "RUNNING" else EXIT_FAILED


def start(ctx: Context, request: dict) -> tuple[int, str]:
    arn, started = start_execution(ctx, validated(request))
    if ctx.json:
        ctx.emit({"executionArn": arn, "name": arn.rsplit(":", 1)[1], "started": started})
    else:
        ctx.say(arn if started else f"{arn} (started before: the same request is the same execution)")
    return EXIT_OK, arn


def watch_mode(ctx: Context, plain: bool) -> str:
    if ctx.json:
        return JSON
    if plain or not getattr(ctx.out, "isatty", lambda: False)():
        return PLAIN
    return TTY


def watch(ctx: Context, execution: str, plain: bool = False, follow_to_end: bool = True, interval: float = 5.0,
          timeout: float = 86400.0, on_poll: Callable[[Wave], None] | None = None,
          sleep: Callable[[float], None] = time.sleep) -> tuple[int, Wave]:
    """Follow the execution to its end (or look once); the exit code is its outcome."""
    arn = ctx.stack.execution_arn(execution)
    watcher = Watch(ctx.client("stepfunctions"), arn, out=ctx.out, mode=watch_mode(ctx, plain), clock=ctx.clock)
    wave = follow(watcher, interval, timeout, on_poll=on_poll, follow_to_end=follow_to_end, sleep=sleep)
    return exit_code(wave.status), wave


# -- preflight -----------------------------------------------------------------------------------------------------


def preflight_request(request: dict) -> dict:
    return {**request, "mode": "preflight"}


def preflight_name(request: dict, now: datetime | None = None) -> str:
    """A new name per run: a preflight changes nothing, and is run again once what it found is fixed."""
    stamp = (now or datetime.now(zoneinfo.ZoneInfo("UTC"))).strftime("%Y%m%dT%H%M%S")
    return f"{request.get('wave') or 'wave'}-pf-{stamp}-{execution_name(request)[-8:]}"


def preflight(ctx: Context, request: dict, interval: float = 5.0, timeout: float = 3600.0,
              sleep: Callable[[float], None] = time.sleep) -> int:
    """Run the wave's read-only checks in the state machine, as its functions' roles; 0 when all pass."""
    checked = validated(preflight_request(request))
    arn, _ = start_execution(ctx, checked, name=preflight_name(checked))
    quiet = Context(ctx.session, ctx.stack, out=Discard(), json=False)
    _, wave = watch(quiet, arn, plain=True, interval=interval, timeout=timeout, sleep=sleep)
    # Every server's line is in the Map's result; the output of a failed preflight names only the failures.
    lines = report_lines(HistoryReader(ctx.client("stepfunctions")).history(arn))
    servers = preflight_servers({"servers": lines} if lines else _execution_output(ctx, arn))
    passed = wave.status == "SUCCEEDED" and bool(servers) and all(server["passed"] for server in servers)
    if ctx.json:
        ctx.emit({"executionArn": arn, "status": wave.status, "passed": passed, "servers": servers})
    else:
        ctx.say(f"Preflight {arn.rsplit(':', 1)[1]}: {wave.status}")
        for line in preflight_table(servers):
            ctx.say(line)
        ctx.say("All checks passed." if passed else "Some checks did not pass.")
    if wave.status == "RUNNING":
        return EXIT_RUNNING
    return EXIT_OK if passed else EXIT_FAILED


def preflight_servers(output: Any) -> list[dict]:
    """Per server: its id, whether it passed, and its checks, from the preflight execution's output."""
    lines = output.get("servers") if isinstance(output, dict) else None
    found = []
    for line in lines if isinstance(lines, list) else []:
        checks = line.get("checks") or line.get("preflight", {}).get("checks") or []
        passed = line.get("passed")
        if passed is None:
            passed = bool(checks) and all(check.get("passed") for check in checks)
        found.append({"sourceServerId": line.get("sourceServerId"), "passed": bool(passed), "checks": checks})
    return found


def preflight_table(servers: list[dict]) -> list[str]:
    lines = [f"{'source server':<21}{'check':<32}{'result':<8}detail"]
    for server in servers:
        for check in server["checks"]:
            lines.append(f"{server['sourceServerId']:<21}{check.get('check', '?'):<32}{check.get('result', '?'):<8}"
                         f"{check.get('detail') or ''}"[:200].rstrip())
            if check.get("fix") and check.get("result") != "pass":
                lines.append(f"{'':<53}fix: {check['fix']}"[:200])
        if not server["checks"]:
            lines.append(f"{server['sourceServerId']:<21}{'(no checks reported)':<32}{'fail':<8}")
    return lines


# -- the approval gate -----------------------------------------------------------------------------------------


def approve(ctx: Context, execution: str, approver: str | None = None) -> int:
    from pipeline import approval

    return _answer(ctx, execution, lambda name, who: approval.approve(
        name, who, session=ctx.session, table=ctx.stack.approval_table), approver, "approved")


def reject(ctx: Context, execution: str, reason: str, approver: str | None = None) -> int:
    from pipeline import approval

    return _answer(ctx, execution, lambda name, who: approval.reject(
        name, who, reason, session=ctx.session, table=ctx.stack.approval_table), approver, "rejected")


def _answer(ctx: Context, execution: str, send: Callable[[str, str], list[str]], approver: str | None,
            verb: str) -> int:
    from pipeline.errors import RequestInvalid

    name = execution.rsplit(":", 1)[1] if execution.startswith("arn:") else execution
    approver = approver or ctx.client("sts").get_caller_identity()["Arn"]
    try:
        answered = send(name, approver)
    except RequestInvalid as err:
        raise UsageError(str(err)) from None
    status = ctx.client("stepfunctions").describe_execution(executionArn=ctx.stack.execution_arn(name))["status"]
    if ctx.json:
        ctx.emit({"execution": name, verb: answered, "by": approver, "status": status})
    elif answered:
        ctx.say(f"{verb.capitalize()} by {approver}: {', '.join(answered)}")
    else:
        ctx.say(f"No server of {name} waits for approval (execution {status}).")
    if answered:
        return EXIT_OK
    # Still running: the servers may not have reached the gate yet.
    return EXIT_RUNNING if status == "RUNNING" else EXIT_FAILED


# -- the ledger: status and cleanup ----------------------------------------------------------------------------


def ledger_entry(ctx: Context, server: str) -> dict | None:
    from pipeline import ledger

    item = ctx.client("dynamodb").get_item(TableName=ctx.stack.ledger_table, ConsistentRead=True,
                                           Key={"sourceServerId": {"S": server}}).get("Item")
    if not item:
        return None
    plain = {key: value.get("S", value.get("N")) for key, value in item.items() if key != "artifacts"}
    plain["artifacts"] = ledger.artifacts_of(item)
    return plain


def server_status(ctx: Context, server: str) -> dict:
    """What the ledger says of one source server, with the accounts its artifacts are in."""
    entry = ledger_entry(ctx, server)
    if entry is None:
        return {"sourceServerId": server, "known": False, "leftOver": [], "kept": []}
    artifacts = entry["artifacts"]
    holder = entry.get("holder")
    holder_status = _execution_status(ctx, holder) if holder else None
    migration = ctx.client("sts").get_caller_identity()["Account"]
    target = artifacts.get("sharedWith") or _target_account(ctx, holder, server)
    finalized = artifacts.get("finalized") == "true"
    left, kept = [], []
    for name, (kind, side) in ARTIFACTS.items():
        if not artifacts.get(name):
            continue
        item = {"artifact": name, "kind": kind, "id": artifacts[name],
                "account": migration if side == "migration" else target}
        if name in ("image", "sharedImage"):
            item["snapshots"] = _snapshots(ctx, artifacts[name])
        (kept if finalized and name in KEPT_AFTER_FINALIZE else left).append(item)
    return {"sourceServerId": server, "known": True, "holder": holder, "holderStatus": holder_status,
            "claimStatus": entry.get("claimStatus"), "outcome": entry.get("outcome"), "wave": entry.get("wave"),
            "finalized": finalized, "leftOver": left, "kept": kept}


def status(ctx: Context, server: str) -> int:
    found = server_status(ctx, server)
    if ctx.json:
        ctx.emit(found)
    else:
        for line in status_lines(found):
            ctx.say(line)
    if _held_by_running(found):
        return EXIT_RUNNING
    return EXIT_FAILED if found["leftOver"] else EXIT_OK


def status_lines(found: dict) -> list[str]:
    server = found["sourceServerId"]
    if not found["known"]:
        return [f"Source server {server}: the ledger has no entry (no execution ever claimed it); nothing left."]
    lines = [f"Source server {server}: {found['claimStatus']} by {found['holder']} ({found['holderStatus']})"
             + (f", outcome {found['outcome']}" if found.get("outcome") else "")
             + (", finalized" if found["finalized"] else "")]
    if found["leftOver"]:
        lines.append("Left over:")
        lines += [_artifact_line(item) for item in found["leftOver"]]
    else:
        lines.append("Nothing left over.")
    if found["kept"]:
        lines.append("Kept (what the finalized cutover restored):")
        lines += [_artifact_line(item) for item in found["kept"]]
    return lines


def cleanup(ctx: Context, server: str, dry_run: bool = False) -> int:
    """Remove what the ledger says is left over, with the pipeline's own Roll Back function.

    The removal runs as that function, under its role: only the pipeline's roles may assume the
    target role, and the function is the code that removes these artifacts during a cutover.
    """
    found = server_status(ctx, server)
    if _held_by_running(found):
        ctx.say(f"Source server {server} is claimed by {found['holder']}, which is still running: nothing removed.")
        return EXIT_RUNNING
    if not found["leftOver"]:
        if ctx.json:
            ctx.emit(found)
        else:
            ctx.say(f"Source server {server}: nothing left over.")
        return EXIT_OK
    if dry_run:
        if ctx.json:
            ctx.emit({**found, "dryRun": True})
        else:
            ctx.say(f"Would remove, for source server {server}:")
            ctx.out.writelines(_artifact_line(item) + "\n" for item in found["leftOver"])
        return EXIT_FAILED
    outcome = _invoke_roll_back(ctx, found)
    after = server_status(ctx, server)
    if ctx.json:
        ctx.emit({**after, "removed": outcome.get("removed", []), "failures": outcome.get("failures", []),
                  "error": outcome.get("errorMessage")})
    else:
        for line in outcome.get("removed", []):
            ctx.say(f"removed {line}")
        for failure in outcome.get("failures", []):
            ctx.say(f"could not remove {failure.get('artifact')}: {failure.get('error')}")
        if outcome.get("errorMessage"):
            ctx.say(f"Roll Back failed: {outcome.get('errorType')}: {outcome['errorMessage'][:300]}")
        ctx.say("Nothing left over." if not after["leftOver"] else "Still left over:")
        ctx.out.writelines(_artifact_line(item) + "\n" for item in after["leftOver"])
    return EXIT_FAILED if after["leftOver"] else EXIT_OK


def _invoke_roll_back(ctx: Context, found: dict) -> dict:
    artifacts = {item["artifact"]: item["id"] for item in found["leftOver"] + found["kept"]}
    target = next((item["account"] for item in found["leftOver"] + found["kept"]
                   if ARTIFACTS[item["artifact"]][1] == "target" and item["account"]), None)
    if target is None and any(ARTIFACTS[name][1] == "target" for name in artifacts if name != "sharedWith"):
        raise UsageError("the ledger does not say which target account holds the target artifacts")
    # The state Roll Back reads: whose claim it acts under, the server and its target account.
    event = {"execution": found["holder"], "wave": found.get("wave") or "cleanup", "options": {"cleanup": True},
             "server": {"sourceServerId": found["sourceServerId"], "target": {"accountId": target or ""}},
             "cutover": {}}
    answer = ctx.client("lambda").invoke(FunctionName=ctx.stack.rollback_function(),
                                         Payload=json.dumps(event).encode())
    payload = json.loads(answer["Payload"].read() or b"{}")
    return payload if isinstance(payload, dict) else {}


def _held_by_running(found: dict) -> bool:
    return found.get("claimStatus") == "CLAIMED" and found.get("holderStatus") == "RUNNING"


def _execution_status(ctx: Context, name: str) -> str:
    try:
        return ctx.client("stepfunctions").describe_execution(executionArn=ctx.stack.execution_arn(name))["status"]
    except ClientError as err:
        if err.response["Error"]["Code"] in ("ExecutionDoesNotExist", "ResourceNotFound"):
            return "UNKNOWN"
        raise


def _target_account(ctx: Context, holder: str | None, server: str) -> str | None:
    """The target account the holder's request named for the server (the ledger records it once shared)."""
    if not holder:
        return None
    try:
        described = ctx.client("stepfunctions").describe_execution(executionArn=ctx.stack.execution_arn(holder))
    except ClientError:
        return None
    request = json.loads(described.get("input") or "{}")
    request = request.get("detail", request) if isinstance(request, dict) else {}
    for entry in request.get("servers", []) if isinstance(request, dict) else []:
        if isinstance(entry, dict) and entry.get("sourceServerId") == server:
            return (entry.get("target") or {}).get("accountId")
    return None


def _snapshots(ctx: Context, image_id: str) -> list[str]:
    try:
        images = ctx.client("ec2").describe_images(ImageIds=[image_id])["Images"]
    except ClientError:
        # Gone already, or not visible to the caller: the ledger's word is what is shown.
        return []
    return [mapping["Ebs"]["SnapshotId"] for image in images for mapping in image.get("BlockDeviceMappings", [])
            if mapping.get("Ebs", {}).get("SnapshotId")]


def _artifact_line(item: dict) -> str:
    snapshots = f", snapshots {' '.join(item['snapshots'])}" if item.get("snapshots") else ""
    where = f" in account {item['account']}" if item.get("account") else " (account unknown)"
    if item["artifact"] == "sharedWith":
        return f"  {item['kind']} account {item['id']}"
    return f"  {item['kind']} {item['id']}{where}{snapshots}"


# -- schedule -----------------------------------------------------------------------------------------------------


def schedule(ctx: Context, request: dict, at: str, timezone: str = "UTC", now: datetime | None = None) -> int:
    """A one-time EventBridge Scheduler schedule that starts the request's execution at `at`, in `timezone`.

    The schedule calls StartExecution itself (a universal target) with the deterministic name, so a
    schedule fired twice, or a `start` of the same request, is one execution.
    """
    validated(request)
    when = schedule_time(at, timezone, now)
    name = execution_name(request)
    state_machine = ctx.stack.state_machine_arn
    partition = state_machine.split(":")[1]
    target = {"Arn": f"arn:{partition}:scheduler:::aws-sdk:sfn:startExecution", "RoleArn": ctx.stack.scheduler_role_arn,
              "Input": json.dumps({"StateMachineArn": state_machine, "Name": name, "Input": canonical_json(request)}),
              "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 10}}
    created = ctx.client("scheduler").create_schedule(
        Name=name, ScheduleExpression=f"at({at})", ScheduleExpressionTimezone=timezone,
        FlexibleTimeWindow={"Mode": "OFF"}, ActionAfterCompletion="DELETE", Target=target, State="ENABLED",
        Description=f"Starts cutover wave {request.get('wave') or 'wave'} once, as execution {name}",
        ClientToken=name)
    if ctx.json:
        ctx.emit({"scheduleArn": created["ScheduleArn"], "name": name, "at": when.isoformat(), "execution": name})
    else:
        ctx.say(f"Scheduled {created['ScheduleArn']}: starts execution {name} at {when.isoformat()}")
    return EXIT_OK


def schedule_time(at: str, timezone: str, now: datetime | None = None) -> datetime:
    """`at` (yyyy-mm-ddThh:mm:ss) in `timezone`, checked to be a real time in the future."""
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone: {timezone!r} is not an IANA time zone (e.g. UTC, Europe/Paris)") from None
    try:
        when = datetime.strptime(at, SCHEDULE_TIME).replace(tzinfo=zone)
    except ValueError:
        raise UsageError(f"--at: {at!r} is not a time written yyyy-mm-ddThh:mm:ss") from None
    if when <= (now or datetime.now(zone)):
        raise UsageError(f"--at: {at} in {timezone} is not in the future")
    return when


# -- helpers ------------------------------------------------------------------------------------------------------


def _execution_output(ctx: Context, arn: str) -> Any:
    described = ctx.client("stepfunctions").describe_execution(executionArn=arn)
    for key in ("output", "cause"):
        try:
            return json.loads(described.get(key) or "")
        except ValueError:
            continue
    return None


class Discard:
    """An output that keeps nothing: a watch that only waits."""

    def write(self, _text: str) -> None:
        pass

    def writelines(self, _lines) -> None:
        pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
