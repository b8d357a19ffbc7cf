"""Distributed Map child executions, listed and described as AWS lists and describes them.

On AWS each iteration of a Distributed Map is a child execution with its own history:
`ListMapRuns` gives the map run, `ListExecutions(mapRunArn=...)` its children, and
`GetExecutionHistory` each child's events. moto's interpreter runs the iterations in the
parent's thread pool, writes their events to one history it then throws away, and fails
`ListExecutions(mapRunArn=...)`. Here every iteration gets its own history, opened with
`ExecutionStarted` and closed with `ExecutionSucceeded` / `ExecutionFailed` / `ExecutionAborted`,
and moto's answers to those three calls are extended to the children (everything else is moto's).

NOTE: RedriveExecution is not modelled: a map run's children are those of its one run.
"""

from __future__ import annotations

import datetime
import json
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator


_OPERATIONS = ("list_executions", "describe_execution", "get_execution_history", "list_map_runs")


@dataclass
class Child:
    """One iteration of a Distributed Map, as the child execution AWS would run it."""

    arn: str
    map_run_arn: str
    state_machine_arn: str
    started: datetime.datetime
    events: Any  # the iteration's own EventManager
    input: Any = None
    status: str = "RUNNING"
    stopped: datetime.datetime | None = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    item_index: int = 0

    @property
    def name(self) -> str:
        return self.arn.rsplit(":", 1)[1]


@dataclass
class Registry:
    children: dict[str, Child] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_map_run(self, map_run_arn: str) -> list[Child]:
        with self.lock:
            return [child for child in self.children.values() if child.map_run_arn == map_run_arn]

    def get(self, arn: str) -> Child | None:
        with self.lock:
            return self.children.get(arn)


@contextmanager
def installed() -> Iterator[Registry]:
    """Give each Distributed Map iteration its own history, and list and describe it as a child execution."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker_module,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    registry = Registry()
    worker_class = worker_module.DistributedItemProcessorWorker
    original_job, original_input = worker_class._eval_job, worker_class._eval_input

    def eval_job(worker, env, job) -> None:
        record = worker._map_run_record
        child_machine = record.map_state_machine_arn
        arn = child_machine.replace(":stateMachine:", ":execution:") + ":" + str(uuid.uuid4())
        env.event_manager = EventManager()
        child = Child(arn=arn, map_run_arn=record.map_run_arn, state_machine_arn=child_machine,
                      started=_now(), events=env.event_manager, item_index=job.job_index)
        env.sandbox_child = child
        with registry.lock:
            registry.children[arn] = child
        try:
            original_job(worker, env, job)
        finally:
            _close(env, child)

    def eval_input(worker, env_frame) -> None:
        original_input(worker, env_frame)
        child = getattr(env_frame, "sandbox_child", None)
        if child is not None:
            # The child's input is the item after the ItemSelector, as on AWS.
            child.input = env_frame.states.get_input()
            _started(env_frame, child)

    worker_class._eval_job, worker_class._eval_input = eval_job, eval_input
    responses = _answer_for_children(registry)
    try:
        yield registry
    finally:
        worker_class._eval_job, worker_class._eval_input = original_job, original_input
        responses()


def _now() -> datetime.datetime:
    # The rehearsal's simulated time, as its history events carry.
    from sandbox import clock

    return datetime.datetime.fromtimestamp(clock.active().now(), tz=datetime.timezone.utc)


def _started(env, child: Child) -> None:
    from moto.stepfunctions.parser.api import HistoryEventType

    # Numbered from 1 in the child's own history; the first state follows this event.
    env.event_history_context.source_event_id = 0
    env.event_manager.add_event(
        context=env.event_history_context, event_type=HistoryEventType.ExecutionStarted,
        event_details={"executionStartedEventDetails": {"input": json.dumps(child.input),
                                                        "roleArn": "sandbox-child-execution"}})


def _close(env, child: Child) -> None:
    from moto.stepfunctions.parser.api import HistoryEventType
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramError, ProgramStopped

    state = env.program_state()
    if isinstance(state, ProgramError):
        details = dict(state.error or {})
        child.status, child.error, child.cause = "FAILED", details.get("error"), details.get("cause")
        event, body = HistoryEventType.ExecutionFailed, {"executionFailedEventDetails": details}
    elif isinstance(state, ProgramStopped):
        child.status, child.error, child.cause = "ABORTED", state.error, state.cause
        event, body = HistoryEventType.ExecutionAborted, {"executionAbortedEventDetails": {}}
    else:
        child.status, child.output = "SUCCEEDED", env.states.get_input()
        event, body = HistoryEventType.ExecutionSucceeded, {
            "executionSucceededEventDetails": {"output": json.dumps(child.output)}}
    env.event_manager.add_event(context=env.event_history_context, event_type=event, event_details=body)
    child.stopped = _now()


def _answer_for_children(registry: Registry) -> Callable[[], None]:
    """Answer ListExecutions(mapRunArn), DescribeExecution and GetExecutionHistory for the children, and
    ListMapRuns before the execution began; everything else goes to moto. Returns what puts moto's back."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse as Responses

    originals = {name: getattr(Responses, name) for name in _OPERATIONS}

    def list_executions(self):
        map_run = self._get_param("mapRunArn")
        if not map_run:
            return originals["list_executions"](self)
        wanted = self._get_param("statusFilter")
        children = [child for child in registry.of_map_run(map_run) if not wanted or child.status == wanted]
        children.sort(key=lambda child: child.started, reverse=True)
        page, token = _page(children, self._get_param("maxResults"), self._get_param("nextToken"))
        return ActionResult({"executions": [_list_item(child) for child in page], **token})

    def describe_execution(self):
        child = registry.get(self._get_param("executionArn") or "")
        return originals["describe_execution"](self) if child is None else ActionResult(_describe(child))

    def get_execution_history(self):
        child = registry.get(self._get_param("executionArn") or "")
        if child is None:
            return originals["get_execution_history"](self)
        events = child.events.get_event_history()
        if self._get_param("reverseOrder"):
            events.reverse()
        page, token = _page(events, self._get_param("maxResults"), self._get_param("nextToken"))
        return ActionResult({"events": page, **token})

    def list_map_runs(self):
        try:
            return originals["list_map_runs"](self)
        except AttributeError:
            # moto fails while the execution's worker has not begun; AWS lists no map run yet.
            return ActionResult({"mapRuns": []})

    for name, method in (("list_executions", list_executions), ("describe_execution", describe_execution),
                         ("get_execution_history", get_execution_history), ("list_map_runs", list_map_runs)):
        setattr(Responses, name, method)

    def restore() -> None:
        for name, method in originals.items():
            setattr(Responses, name, method)

    return restore


def _page(items: list, max_results: Any, next_token: Any) -> tuple[list, dict]:
    start = int(next_token or 0)
    size = int(max_results or 1000) or 1000
    token = {"nextToken": str(start + size)} if start + size < len(items) else {}
    return items[start:start + size], token


def _list_item(child: Child) -> dict:
    item = {"executionArn": child.arn, "stateMachineArn": child.state_machine_arn, "name": child.name,
            "status": child.status, "startDate": child.started, "mapRunArn": child.map_run_arn}
    if child.stopped:
        item["stopDate"] = child.stopped
    return item


def _describe(child: Child) -> dict:
    described = {**_list_item(child), "input": json.dumps(child.input)}
    if child.output is not None:
        described["output"] = json.dumps(child.output)
    for key, value in (("error", child.error), ("cause", child.cause)):
        if value:
            described[key] = value
    return described
