"""Fault injection: make chosen AWS calls of the pipeline fail, or a Lambda crash after its work.

A fault is written `[SCOPE/]SERVICE:Operation:KIND[:CALLS]` or `TARGET:crash-after[:CALLS]`:

    ec2:CreateImage:throttle              the first CreateImage call is throttled
    ec2:CreateImage:5xx:1-6               calls 1 to 6 answer InternalError (outlives the SDK's 5 retries)
    kms:CreateGrant:timeout:2+            every call from the second times out after KMS acted on it
    Check Image/ec2:DescribeImages:denied only calls made by the "Check Image" state are counted
    CreateImageFunction:crash-after       the function does its work, then its first invocation crashes

SCOPE and TARGET are a function's logical id in template.yaml or a Task state's name in the ASL.
CALLS counts the calls the pipeline's handlers make (each SDK attempt is a call), or for
crash-after the invocations: `N`, `N-M` or `N+`; default 1.

Kinds: `throttle` (the service's own throttling error and status), `5xx` (its internal error),
`timeout` (a read timeout raised on the send path *after* the service did the work, the worst
case for idempotency), `denied` (access denied: a hard failure nothing retries), and
`crash-after` (the handler ran, its calls happened, then the invocation failed the way Step
Functions reports a function that timed out or ran out of memory: `Lambda.Unknown`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import botocore.endpoint
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from moto.core.botocore_stubber import MockRawResponse

AWS_KINDS = ("throttle", "5xx", "timeout", "denied")
CRASH_AFTER = "crash-after"
KINDS = AWS_KINDS + (CRASH_AFTER,)

# The error name Step Functions gives an invocation that timed out or crashed after running.
CRASH_ERROR = "Lambda.Unknown"

# Per service: wire protocol, then (code, HTTP status) for throttle, 5xx and denied, as each
# service really answers them.
SERVICE_ERRORS: dict[str, tuple[str, dict[str, tuple[str, int]]]] = {
    "ec2": ("ec2", {"throttle": ("RequestLimitExceeded", 503), "5xx": ("InternalError", 500),
                    "denied": ("UnauthorizedOperation", 403)}),
    "kms": ("json", {"throttle": ("ThrottlingException", 400), "5xx": ("KMSInternalException", 500),
                     "denied": ("AccessDeniedException", 400)}),
    "dynamodb": ("json", {"throttle": ("ThrottlingException", 400), "5xx": ("InternalServerError", 500),
                          "denied": ("AccessDeniedException", 400)}),
    "ssm": ("json", {"throttle": ("ThrottlingException", 400), "5xx": ("InternalServerError", 500),
                     "denied": ("AccessDeniedException", 400)}),
    "mgn": ("rest-json", {"throttle": ("ThrottlingException", 429), "5xx": ("InternalServerException", 500),
                          "denied": ("AccessDeniedException", 403)}),
    "sts": ("query", {"throttle": ("Throttling", 400), "5xx": ("InternalFailure", 500),
                      "denied": ("AccessDenied", 403)}),
    "sns": ("query", {"throttle": ("Throttled", 429), "5xx": ("InternalError", 500),
                      "denied": ("AuthorizationError", 403)}),
}

_SPEC = re.compile(r"^(?:(?P<scope>[^/]+)/)?(?P<body>.+)$")
_CALLS = re.compile(r"^(?P<first>[1-9]\d*)(?:(?P<plus>\+)|-(?P<last>[1-9]\d*))?$")


class FaultSpecError(ValueError):
    """A fault written in a way the sandbox cannot inject."""


@dataclass(frozen=True)
class Fault:
    kind: str
    first: int = 1
    last: int | None = 1  # None: every call from `first` on
    operation: str | None = None  # "ec2:CreateImage"; None for crash-after
    target: str | None = None  # the scope (state or function) the fault counts calls of

    @classmethod
    def parse(cls, text: str) -> Fault:
        match = _SPEC.match(text.strip())
        scope, parts = match["scope"], match["body"].split(":")
        if len(parts) >= 2 and parts[1] == CRASH_AFTER and scope is None:
            if len(parts) > 3:
                raise FaultSpecError(f"{text!r}: write TARGET:crash-after[:CALLS]")
            return cls(CRASH_AFTER, *_calls(parts[2] if len(parts) == 3 else "1", text), target=parts[0])
        if len(parts) not in (3, 4):
            raise FaultSpecError(f"{text!r}: write [SCOPE/]SERVICE:Operation:KIND[:CALLS]"
                                 " or TARGET:crash-after[:CALLS]")
        service, operation, kind = parts[0].lower(), parts[1], parts[2]
        if kind not in AWS_KINDS:
            raise FaultSpecError(f"{text!r}: kind must be one of {', '.join(KINDS)}")
        if service not in SERVICE_ERRORS:
            raise FaultSpecError(f"{text!r}: the pipeline calls no {service!r} (faults exist for"
                                 f" {', '.join(sorted(SERVICE_ERRORS))})")
        return cls(kind, *_calls(parts[3] if len(parts) == 4 else "1", text), operation=f"{service}:{operation}",
                   target=scope)

    def covers(self, call: int) -> bool:
        return call >= self.first and (self.last is None or call <= self.last)

    def __str__(self) -> str:
        calls = f"{self.first}+" if self.last is None else (f"{self.first}" if self.last == self.first
                                                             else f"{self.first}-{self.last}")
        if self.kind == CRASH_AFTER:
            return f"{self.target}:{CRASH_AFTER}:{calls}"
        scope = f"{self.target}/" if self.target else ""
        return f"{scope}{self.operation}:{self.kind}:{calls}"


def _calls(text: str, spec: str) -> tuple[int, int | None]:
    match = _CALLS.match(text)
    if not match:
        raise FaultSpecError(f"{spec!r}: CALLS must be N, N-M or N+ (counting from 1), not {text!r}")
    first = int(match["first"])
    last = None if match["plus"] else int(match["last"] or first)
    if last is not None and last < first:
        raise FaultSpecError(f"{spec!r}: {first}-{last} is an empty range")
    return first, last


class FaultPlan:
    """The faults of one rehearsal, the calls the handlers made, and the faults injected."""

    def __init__(self, faults: list[Fault] | None = None):
        self.faults = list(faults or [])
        self.calls: Counter[tuple[str | None, str]] = Counter()  # (scope, operation) and (None, operation)
        self.invocations: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()  # every operation the handlers called, for discovery
        self.functions: Counter[str] = Counter()  # every function invoked
        self._local = threading.local()
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, specs: list[str] | None) -> FaultPlan:
        if specs is not None and not isinstance(specs, list):
            raise FaultSpecError("faults must be a list of strings")
        return cls([Fault.parse(str(spec)) for spec in specs or []])

    # -- while a handler runs ----------------------------------------------------------------

    @contextmanager
    def handler(self, logical_id: str, state_name: str) -> Iterator[None]:
        """Calls made inside are the pipeline's: counted, and faulted if a fault says so."""
        self._local.scopes = (logical_id, state_name)
        with self._lock:
            self.functions[logical_id] += 1
        try:
            yield
        finally:
            self._local.scopes = None

    def crash_after(self, logical_id: str, state_name: str) -> bool:
        """Whether this invocation, its work done, crashes instead of returning."""
        faults = [f for f in self.faults if f.kind == CRASH_AFTER and f.target in (logical_id, state_name)]
        if not faults:
            return False
        with self._lock:
            counts = {}
            for scope in {logical_id, state_name}:
                self.invocations[scope] += 1
                counts[scope] = self.invocations[scope]
            hit = next((f for f in faults if f.covers(counts[f.target])), None)
            if hit:
                self.injected[str(hit)] += 1
        return hit is not None

    # -- the send path -----------------------------------------------------------------------

    def fault_for(self, service: str, operation: str) -> Fault | None:
        """The fault this attempt of a call meets, if it is the pipeline's and a fault covers it."""
        scopes = getattr(self._local, "scopes", None)
        if scopes is None:
            return None
        name = f"{service}:{operation}"
        with self._lock:
            self.operations[name] += 1
            counts = {None: self._count(None, name)}
            for scope in set(scopes):
                counts[scope] = self._count(scope, name)
            for fault in self.faults:
                if fault.operation == name and (fault.target is None or fault.target in scopes):
                    if fault.covers(counts[fault.target]):
                        self.injected[str(fault)] += 1
                        return fault
        return None

    def _count(self, scope: str | None, name: str) -> int:
        self.calls[(scope, name)] += 1
        return self.calls[(scope, name)]

    def report(self) -> dict:
        return {"faults": [str(fault) for fault in self.faults], "injected": dict(self.injected),
                "operations": dict(sorted(self.operations.items())), "functions": dict(sorted(self.functions.items()))}

    # -- installing --------------------------------------------------------------------------

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Fault each attempt of an HTTP request where botocore sends it, ahead of whatever answers
        it (moto, the MGN simulator), and make the SDK's retry back-off take no real time (the
        interpreter's retry intervals already take none)."""
        original_send = botocore.endpoint.Endpoint._do_get_response
        original_time = botocore.endpoint.time
        plan = self

        def do_get_response(endpoint, request, operation_model, context):
            service = operation_model.service_model.service_id.hyphenize()
            fault = plan.fault_for(service, operation_model.name)
            if fault is None:
                return original_send(endpoint, request, operation_model, context)
            if fault.kind == "timeout":
                # The service did the work; only its answer is lost.
                original_send(endpoint, request, operation_model, context)
                return None, ReadTimeoutError(endpoint_url=request.url)
            emitter = endpoint._event_emitter
            endpoint._event_emitter = _Answering(emitter, error_response(request.url, service, fault.kind))
            try:
                return original_send(endpoint, request, operation_model, context)
            finally:
                endpoint._event_emitter = emitter

        botocore.endpoint.Endpoint._do_get_response = do_get_response
        botocore.endpoint.time = NoSleep()
        try:
            yield
        finally:
            botocore.endpoint.time = original_time
            botocore.endpoint.Endpoint._do_get_response = original_send


class _Answering:
    """An event emitter that answers the send of one request itself, so nothing else sees it."""

    def __init__(self, emitter: Any, response: AWSResponse):
        self._emitter, self._response = emitter, response

    def emit(self, event_name: str, **kwargs: Any) -> list:
        if event_name.startswith("before-send."):
            return [(None, self._response)]
        return self._emitter.emit(event_name, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._emitter, name)


def error_response(url: str, service: str, kind: str) -> AWSResponse:
    """The error answer `service` gives for `kind`, in its own wire protocol."""
    protocol, errors = SERVICE_ERRORS[service]
    code, status = errors[kind]
    message = {"throttle": "Rate exceeded", "5xx": "We encountered an internal error. Please try again.",
               "denied": "You are not authorized to perform this operation."}[kind]
    request_id = "sandbox-fault-0000-0000-000000000000"
    headers = {"x-amzn-RequestId": request_id}
    if protocol == "ec2":
        body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
                f"<RequestID>{request_id}</RequestID></Response>")
    elif protocol == "query":
        body = (f"<ErrorResponse><Error><Type>{'Receiver' if status >= 500 else 'Sender'}</Type><Code>{code}</Code>"
                f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    elif protocol == "json":
        headers["Content-Type"] = "application/x-amz-json-1.1"
        body = json.dumps({"__type": code, "message": message})
    else:
        headers["x-amzn-ErrorType"] = code
        headers["Content-Type"] = "application/json"
        body = json.dumps({"message": message})
    return AWSResponse(url, status, headers, MockRawResponse(body))


class NoSleep:
    """Stands in for the `time` module of a library that sleeps between retries (botocore's
    endpoint, moto's Step Functions retrier): everything but sleep is real."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None


# --- the fault matrix ------------------------------------------------------------------------------------------------

# Calls 1 to 6 outlive the SDK (the first attempt and its 5 retries), so the state machine's retriers are exercised too.
MATRIX_CALLS = "1-6"
MATRIX_KINDS = ("throttle", "5xx", CRASH_AFTER)
SUCCEEDED_OUTCOMES = ("CUT_OVER",)

# Generated ids and keys differ from run to run; the inventory is compared without them.
_GENERATED = re.compile(
    r"\b(?:i|ami|snap|vol|mgnjob|r|eni)-[0-9a-zA-Z]{8,}\b|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\b[0-9a-f]{64}\b|\brehearsal-[0-9a-f]{12}\b")
_TRANSIENT_STATES = {"instances": ("terminated", "shutting-down")}


def comparable(inventory: dict) -> dict[str, Counter]:
    """The inventory as counts of things per account and kind, ids aside, terminated instances left out.

    NOTE: the wave's SNS notification is not part of the inventory: a Summarize Wave that crashes
    after publishing publishes again when retried (SNS has no idempotency token; delivery is at
    least once anyway), so a crash there gives a second notification the matrix does not count.
    """
    found: dict[str, Counter] = {}
    for account, holdings in inventory.get("accounts", {}).items():
        for kind, items in holdings.items():
            gone = _TRANSIENT_STATES.get(kind, ())
            found[f"{account} {kind}"] = Counter(
                _GENERATED.sub("<id>", json.dumps(item, sort_keys=True)) for item in items
                if not (isinstance(item, dict) and item.get("state") in gone))
    found["mgn sourceServers"] = Counter(
        f"{server['id']} {server['lifeCycle']}" for server in inventory.get("mgn", {}).get("sourceServers", []))
    return found


def differences(baseline: dict, inventory: dict) -> dict[str, list[str]]:
    """What `inventory` holds beyond `baseline`, split into duplicates (one more of something the
    baseline has) and leaks (something the baseline does not have); and what it lacks."""
    base, seen = comparable(baseline), comparable(inventory)
    result: dict[str, list[str]] = {"duplicates": [], "leaks": [], "missing": []}
    for where in sorted(set(base) | set(seen)):
        extra = seen.get(where, Counter()) - base.get(where, Counter())
        for item, count in extra.items():
            bucket = "duplicates" if item in base.get(where, Counter()) else "leaks"
            result[bucket] += [f"{where}: {item}"] * count
        for item, count in (base.get(where, Counter()) - seen.get(where, Counter())).items():
            result["missing"] += [f"{where}: {item}"] * count
    return result


def outcomes(rehearsal_json: dict) -> list[str]:
    for source in (rehearsal_json.get("output"), rehearsal_json.get("cause")):
        if isinstance(source, dict) and isinstance(source.get("servers"), list):
            return [server.get("outcome") for server in source["servers"]]
    return []


def rehearse_once(request: Any, world: dict | None, specs: list[str]) -> dict:
    """One rehearsal with `specs` injected, as plain JSON (runs in a worker process)."""
    import contextlib
    import io

    from sandbox.runner import Sandbox

    # The handlers' metrics go to stdout, which belongs to the matrix table.
    with contextlib.redirect_stdout(io.StringIO()), Sandbox(request, world, faults=specs) as sandbox:
        return sandbox.rehearse().as_json()


def matrix_specs(baseline: dict, kinds: tuple[str, ...], operations: list[str] | None) -> list[str]:
    """One fault per (operation the baseline called x kind), and per (function x crash-after)."""
    specs = []
    called = operations or sorted(baseline["faults"]["operations"])
    for kind in kinds:
        if kind == CRASH_AFTER:
            specs += [f"{function}:{CRASH_AFTER}:1" for function in sorted(baseline["faults"]["functions"])]
        else:
            specs += [f"{operation}:{kind}:{MATRIX_CALLS}" for operation in called]
    return specs


def run_matrix(request: Any, world: dict | None, kinds: tuple[str, ...] = MATRIX_KINDS,
               operations: list[str] | None = None, jobs: int = 2, progress: Any = None) -> dict:
    """The fault-free rehearsal, then one rehearsal per fault, each compared with the fault-free one."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    baseline = rehearse_once(request, world, [])
    if baseline["status"] != "SUCCEEDED":
        raise FaultSpecError(f"the fault-free rehearsal ended {baseline['status']}: {baseline.get('error')}")
    specs = matrix_specs(baseline, kinds, operations)
    # Each rehearsal owns the process's moto and environment, so runs go to separate processes.
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=get_context("spawn")) as pool:
        runs = pool.map(rehearse_once, [request] * len(specs), [world] * len(specs), [[s] for s in specs])
        rows = []
        for index, (spec, run) in enumerate(zip(specs, runs), start=1):
            rows.append(_row(spec, run, baseline))
            if progress:
                progress(f"[{index}/{len(specs)}] {spec}: {'passed' if passed(rows[-1]) else 'FAILED'}")
    return {"baseline": {"status": baseline["status"], "operations": baseline["faults"]["operations"],
                         "functions": baseline["faults"]["functions"]}, "rows": rows}


def _row(spec: str, run: dict, baseline: dict) -> dict:
    found = differences(baseline["inventory"], run["inventory"])
    survived = run["status"] == "SUCCEEDED" and all(o in SUCCEEDED_OUTCOMES for o in outcomes(run))
    return {"fault": spec, "injected": sum(run["faults"]["injected"].values()), "status": run["status"],
            "survived": survived, "duplicates": found["duplicates"], "leaks": found["leaks"],
            "missing": found["missing"], "outcomes": outcomes(run)}


def passed(row: dict) -> bool:
    return row["survived"] and row["injected"] > 0 and not (row["duplicates"] or row["leaks"] or row["missing"])


def render_matrix(matrix: dict) -> str:
    lines = [f"{'fault':<58}{'injected':>9}{'survived':>10}{'duplicates':>12}{'leaked':>8}{'missing':>9}"]
    for row in matrix["rows"]:
        lines.append(f"{row['fault']:<58}{row['injected']:>9}{'yes' if row['survived'] else 'NO':>10}"
                     f"{len(row['duplicates']):>12}{len(row['leaks']):>8}{len(row['missing']):>9}")
        for item in (row["duplicates"] + row["leaks"] + row["missing"])[:5]:
            lines.append(f"    {item[:150]}")
    failed = [row for row in matrix["rows"] if not passed(row)]
    lines += ["", f"{len(matrix['rows'])} runs, {sum(r['injected'] for r in matrix['rows'])} faults injected,"
                  f" {len(matrix['rows']) - len(failed)} passed, {len(failed)} failed"]
    return "\n".join(lines)
