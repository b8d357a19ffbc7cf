"""A wave's progress, one row per server, made from execution history events alone.

Pure functions over the events `GetExecutionHistory` returns (as boto3 parses them, or as
recorded in JSON): the parent execution's, and each server's child execution's. On AWS the
Distributed Map runs every server in a child execution, so the parent's history names the
servers (Normalize Request's output) and ends with their report lines; the children's
histories say which step each server is in. Any of them may be missing (not started yet,
or not readable): a row then says what the others tell.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

# The steps a migration engineer follows, in order, with the states of each (a step's poll
# loop, its checks and waits, belong to it). A state not named here is shown by its own name.
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Claim Server", ("Claim Server",)),
    ("Start Cutover", ("Cutover Already Launched?", "Pick Up Launched Cutover", "Start Cutover", "Cut Over Before?",
                       "Check Cutover Launch", "Cutover Instance Launched?", "Wait For Cutover Launch")),
    ("Create Image", ("Create Image", "Check Image", "Image Available?", "Wait For Image")),
    ("Copy Image For Sharing", ("Copy Image For Sharing", "Sharing Copy Available?", "Wait For Sharing Copy",
                                "Check Sharing Copy", "Wait For Sharing Copy Slot")),
    ("Share With Target", ("Share With Target",)),
    # The target's own copy may be started or waited for after the agent steps (restoreFrom sharedImage):
    # the step is shown again then, and progress stays where it was.
    ("Copy Image To Target", ("Copy Image To Target", "Check Target Image", "Target Image Available?",
                              "Wait For Target Image", "Wait For Target Copy Slot", "Restore From Target Image?",
                              "Target Copy Pending?", "Check Target Copy", "Target Copy Available?",
                              "Wait For Target Copy", "Start Target Copy", "Target Copy Started?",
                              "Wait To Start Target Copy")),
    ("Launch Restored Instance", ("Launch Restored Instance", "Check Restored Instance", "Restored Instance Healthy?",
                                  "Wait For Restored Instance")),
    ("Wait For Approval", ("Approval Required?", "Wait For Approval", "Approval Deadline Passed",
                           "Approval Not Given")),
    ("Finalize Cutover", ("Finalize Cutover", "Resume After Finalize", "Finalized Before")),
    ("Wait For Managed Instance", ("Install Agent?", "Check Managed Instance", "Managed Instance Online?",
                                   "Wait For Managed Instance")),
    ("Install Agent", ("Install Agent", "Check Agent Install", "Agent Installed?", "Wait For Agent Install")),
    ("Configure Agent", ("Configure Agent", "Check Agent Configure", "Agent Configured?", "Wait For Agent Configure")),
    ("Clean Up", ("Earlier Follow-Up?", "Follow-Up Needed?", "Clean Up", "Clean Up After Follow-Up")),
    ("Release Server", ("Release Server",)),
)
STEP_OF_STATE = {state: step for step, states in STEPS for state in states}
STEP_NAMES = tuple(step for step, _ in STEPS)
# States off the happy path: shown as the step, counted as no progress.
ASIDE = ("Roll Back", "Report Refusal", "Report Unreleased", "Report Target Copy Failure")
# The states whose result is the server's line of the wave report (or of its preflight).
REPORTING_STATES = ("Release Server", "Report Refusal", "Report Unreleased", "Preflight Server", "Preflight Not Run")
# A preflight's line says whether the server passed, not an outcome.
PASSED, NOT_READY = "PASSED", "NOT_READY"

PENDING = "not started"
ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# Outcomes the pipeline reports that count as cut over.
CUT_OVER = ("CUT_OVER", "CUT_OVER_WITH_FOLLOW_UP")


@dataclass(frozen=True)
class Row:
    """One server: where it is, since when, and how it ended."""

    server: str
    step: str = PENDING
    step_started: float | None = None
    started: float | None = None
    ended: float | None = None
    outcome: str | None = None
    steps_done: int = 0
    detail: str | None = None
    # Every step the server entered, with when: what happened between two polls is not lost.
    path: tuple[tuple[str, float | None], ...] = ()

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def key(self) -> tuple:
        """What a change is: a new step or an outcome (not the passing of time)."""
        return self.server, self.step, self.outcome

    def elapsed_in_step(self, now: float) -> float | None:
        return None if self.step_started is None else max(0.0, (self.ended or now) - self.step_started)

    def elapsed(self, now: float) -> float | None:
        return None if self.started is None else max(0.0, (self.ended or now) - self.started)

    def as_json(self, now: float) -> dict:
        return {"server": self.server, "step": self.step, "outcome": self.outcome, "stepsDone": self.steps_done,
                "stepsTotal": len(STEPS), "secondsInStep": _rounded(self.elapsed_in_step(now)),
                "secondsTotal": _rounded(self.elapsed(now)), "detail": self.detail}


@dataclass(frozen=True)
class Wave:
    """The execution and its rows, in the order the request lists the servers."""

    execution: str
    status: str = "RUNNING"
    step: str = PENDING
    started: float | None = None
    ended: float | None = None
    rows: tuple[Row, ...] = field(default_factory=tuple)
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ENDED

    @property
    def servers_done(self) -> int:
        return sum(1 for row in self.rows if row.done)

    @property
    def steps_done(self) -> int:
        return sum(row.steps_done for row in self.rows)

    @property
    def steps_total(self) -> int:
        return len(self.rows) * len(STEPS)

    def as_json(self, now: float) -> dict:
        return {"execution": self.execution, "status": self.status, "step": self.step, "error": self.error,
                "serversDone": self.servers_done, "serversTotal": len(self.rows), "stepsDone": self.steps_done,
                "stepsTotal": self.steps_total, "secondsTotal": _rounded(_span(self.started, self.ended, now)),
                "servers": [row.as_json(now) for row in self.rows]}


def wave_progress(execution: str, parent_events: list[dict], children: Iterable[list[dict]] = (),
                  status: str | None = None, request: Any = None) -> Wave:
    """The wave from the parent's history and the children's (each a list of events, any order), and the
    execution's input (`request`, from DescribeExecution) for the servers before the history names them."""
    parent = _ordered(parent_events)
    rows = {server: Row(server) for server in server_ids(parent) or _servers_in(_json(request))}
    for events in children:
        events = _ordered(events)
        server = server_of(events)
        if server is None:
            continue
        row = server_row(server, events)
        current = rows.get(server)
        # A redriven server has two children: the one that started last tells where it is.
        if current is None or current.started is None or (row.started or 0) >= current.started:
            rows[server] = row
    for line in report_lines(parent):
        server = line.get("sourceServerId")
        if server and _outcome_of(line):
            rows[server] = _with_report(rows.get(server) or Row(server), line, _end_time(parent))
    step, started, ended, error, final = _parent_state(parent)
    return Wave(execution=execution, status=status or final, step=step, started=started, ended=ended,
                rows=tuple(rows.values()), error=error)


def server_ids(parent: list[dict]) -> list[str]:
    """The wave's servers, as Normalize Request listed them (or as the request did, before that)."""
    for event in reversed(parent):
        details = event.get("stateExitedEventDetails") or {}
        if event.get("type") == "TaskStateExited" and details.get("name") == "Normalize Request":
            return _servers_in(_json(details.get("output")))
    for event in parent:
        if event.get("type") == "ExecutionStarted":
            return _servers_in(_json((event.get("executionStartedEventDetails") or {}).get("input")))
    return []


def server_of(events: list[dict]) -> str | None:
    """The source server a child execution works on: its input's `server`."""
    for event in events:
        details = event.get("executionStartedEventDetails") or event.get("stateEnteredEventDetails")
        if details and "input" in details:
            value = _json(details["input"])
            if isinstance(value, dict):
                server = value.get("server") if isinstance(value.get("server"), dict) else value
                if isinstance(server.get("sourceServerId"), str):
                    return server["sourceServerId"]
    return None


def server_row(server: str, events: list[dict]) -> Row:
    """A server's row from its child execution's history."""
    row = Row(server)
    for event in events:
        kind, stamp = event.get("type", ""), _seconds(event.get("timestamp"))
        if kind == "ExecutionStarted":
            row = replace(row, started=stamp)
        elif kind.endswith("StateEntered"):
            row = _entered(row, (event.get("stateEnteredEventDetails") or {}).get("name", ""), stamp)
        elif kind.endswith("StateExited"):
            details = event.get("stateExitedEventDetails") or {}
            if details.get("name") in REPORTING_STATES:
                line = _json(details.get("output"))
                if _outcome_of(line):
                    row = _with_report(row, line, stamp)
        elif kind in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
            row = _child_ended(row, event, kind, stamp)
    return row


def report_lines(parent: list[dict]) -> list[dict]:
    """The servers' report lines, once the wave has them (the Map's result, then the summary)."""
    for event in reversed(parent):
        kind = event.get("type", "")
        details = (event.get("stateExitedEventDetails") or event.get("executionSucceededEventDetails")
                   or event.get("executionFailedEventDetails") or {})
        if kind == "MapStateExited":
            # The cutover Map writes its report lines over the request's servers; the preflight
            # Map writes its results beside them.
            output = _json(details.get("output")) or {}
            results = output.get("results")
            if isinstance(results, list):
                return [line for line in results if isinstance(line, dict)]
            lines = output.get("servers")
            if isinstance(lines, list) and all(isinstance(line, dict) and "outcome" in line for line in lines):
                return lines
        if kind in ("ExecutionSucceeded", "ExecutionFailed"):
            body = _json(details.get("output") or details.get("cause"))
            if isinstance(body, dict) and isinstance(body.get("servers"), list):
                return [line for line in body["servers"] if isinstance(line, dict)]
    return []


def _entered(row: Row, state: str, stamp: float | None) -> Row:
    step = STEP_OF_STATE.get(state, state)
    if step == row.step:
        return row
    # Steps before this one are done (or skipped); a step the pipeline runs out of order (the
    # target's own copy, waited for after the agent steps) does not take progress back.
    done = max(row.steps_done, STEP_NAMES.index(step)) if step in STEP_NAMES else row.steps_done
    return replace(row, step=step, step_started=stamp, started=row.started or stamp, steps_done=done,
                   path=row.path + ((step, stamp),))


def _with_report(row: Row, line: dict, stamp: float | None) -> Row:
    detail = None
    if line.get("error"):
        error = line["error"]
        code = error.get("code") if isinstance(error, dict) else str(error)
        detail = f"at {line.get('failedStep') or '?'}: {code}"
    elif line.get("leftToDo"):
        detail = "left to do: " + ", ".join(line["leftToDo"])
    elif line.get("failedChecks"):
        detail = "checks failed: " + ", ".join(line["failedChecks"])
    return replace(row, outcome=_outcome_of(line), ended=row.ended or stamp, steps_done=len(STEPS),
                   detail=detail or row.detail)


def _outcome_of(line: Any) -> str | None:
    if not isinstance(line, dict):
        return None
    if isinstance(line.get("outcome"), str):
        return line["outcome"]
    if isinstance(line.get("passed"), bool):
        return PASSED if line["passed"] else NOT_READY
    return None


def _child_ended(row: Row, event: dict, kind: str, stamp: float | None) -> Row:
    if row.outcome is None:
        details = event.get("executionSucceededEventDetails") or {}
        line = _json(details.get("output"))
        if _outcome_of(line):
            row = _with_report(row, line, stamp)
        elif kind == "ExecutionSucceeded":
            row = replace(row, outcome="SUCCEEDED", steps_done=len(STEPS))
        else:
            failed = event.get("executionFailedEventDetails") or {}
            row = replace(row, outcome=kind.removeprefix("Execution").upper().replace("TIMEDOUT", "TIMED_OUT"),
                          detail=failed.get("error") or row.detail, steps_done=len(STEPS))
    return replace(row, ended=stamp)


def _parent_state(parent: list[dict]) -> tuple[str, float | None, float | None, str | None, str]:
    step, started, ended, error, status = PENDING, None, None, None, "RUNNING"
    for event in parent:
        kind, stamp = event.get("type", ""), _seconds(event.get("timestamp"))
        if kind == "ExecutionStarted":
            started = stamp
        elif kind.endswith("StateEntered"):
            step = (event.get("stateEnteredEventDetails") or {}).get("name", step)
        elif kind in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
            ended = stamp
            status = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED",
                      "ExecutionAborted": "ABORTED", "ExecutionTimedOut": "TIMED_OUT"}[kind]
            failed = event.get("executionFailedEventDetails") or {}
            error = failed.get("error")
    return step, started, ended, error, status


def _end_time(parent: list[dict]) -> float | None:
    for event in reversed(parent):
        if event.get("type") in ("MapStateExited", "ExecutionSucceeded", "ExecutionFailed"):
            return _seconds(event.get("timestamp"))
    return None


def _servers_in(request: Any) -> list[str]:
    if not isinstance(request, dict):
        return []
    # A Cutover Requested event carries the request as its detail.
    request = request.get("detail") if isinstance(request.get("detail"), dict) else request
    servers = request.get("servers") if isinstance(request, dict) else None
    if not isinstance(servers, list):
        return []
    return [server["sourceServerId"] for server in servers
            if isinstance(server, dict) and isinstance(server.get("sourceServerId"), str)]


def _ordered(events: list[dict]) -> list[dict]:
    return sorted(events, key=lambda event: event.get("id", 0))


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return None


def _seconds(stamp: Any) -> float | None:
    """Epoch seconds from what boto3 gives (datetime), what JSON keeps (ISO text) or a number."""
    if isinstance(stamp, datetime.datetime):
        return stamp.timestamp()
    if isinstance(stamp, (int, float)):
        return float(stamp)
    if isinstance(stamp, str):
        try:
            return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _span(started: float | None, ended: float | None, now: float) -> float | None:
    return None if started is None else max(0.0, (ended or now) - started)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
