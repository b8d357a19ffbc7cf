"""Recorded execution histories for the progress model's tests, and a stand-in Step Functions client.

`python -m tests.cli.helpers` rehearses events/console-wave.json with the first target copy
denied (one server rolls back, the other cuts over) and writes, per execution, the history
events the progress model reads to tests/cli/recorded/console-wave-one-rolled-back.json.
Long inputs and outputs are cut down to the fields the model reads; nothing else is changed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORDED = Path(__file__).resolve().parent / "recorded"
ONE_ROLLED_BACK = RECORDED / "console-wave-one-rolled-back.json"
# Read by the model in inputs and outputs: who the servers are, and each server's report line.
_KEPT_STATES = ("Normalize Request", "Release Server", "Report Refusal", "Report Unreleased", "Cut Over Servers")


def load_recording(path: Path = ONE_ROLLED_BACK) -> dict:
    return json.loads(path.read_text())


def trimmed(events: list[dict]) -> list[dict]:
    """The events with their bulky inputs and outputs dropped where the model does not read them."""
    kept = []
    for event in events:
        event = copy.deepcopy(event)
        for key in ("stateEnteredEventDetails", "stateExitedEventDetails"):
            details = event.get(key)
            if details and details.get("name") not in _KEPT_STATES:
                details.pop("input", None)
                details.pop("output", None)
        for key in ("lambdaFunctionScheduledEventDetails", "lambdaFunctionSucceededEventDetails",
                    "taskScheduledEventDetails", "taskSucceededEventDetails"):
            event.pop(key, None)
        started = event.get("executionStartedEventDetails")
        if started and "input" in started:
            body = json.loads(started["input"])
            if isinstance(body, dict) and isinstance(body.get("server"), dict):
                started["input"] = json.dumps({"server": {"sourceServerId": body["server"]["sourceServerId"]}})
        kept.append(event)
    return kept


class RecordedStepFunctions:
    """Answers the four reads `watch` makes from a recording, up to a moment that a test moves on."""

    def __init__(self, recording: dict):
        self.recording = recording
        self.until = float("inf")

    def _upto(self, events: list[dict]) -> list[dict]:
        from mgncutover.progress import _seconds

        return [event for event in events if (_seconds(event["timestamp"]) or 0) <= self.until]

    def describe_execution(self, executionArn: str) -> dict:
        parent = self._upto(self.recording["parent"]["events"])
        ended = [e for e in parent if e["type"] in ("ExecutionSucceeded", "ExecutionFailed")]
        status = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED"}[ended[0]["type"]] if ended \
            else "RUNNING"
        return {"executionArn": executionArn, "name": self.recording["parent"]["name"], "status": status}

    def get_execution_history(self, executionArn: str, maxResults: int = 1000, nextToken: str | None = None,
                              reverseOrder: bool = False) -> dict:
        # One page, oldest first, whatever is asked: the reader must cope with a service that ignores paging.
        if executionArn == self.recording["parent"]["arn"]:
            return {"events": self._upto(self.recording["parent"]["events"])}
        child = next(child for child in self.recording["children"] if child["arn"] == executionArn)
        return {"events": self._upto(child["events"])}

    def list_map_runs(self, executionArn: str) -> dict:
        started = any(e["type"] == "MapRunStarted" for e in self._upto(self.recording["parent"]["events"]))
        return {"mapRuns": [{"mapRunArn": "recorded-map-run"}] if started else []}

    def list_executions(self, mapRunArn: str, maxResults: int = 1000, nextToken: str | None = None) -> dict:
        children = []
        for child in self.recording["children"]:
            events = self._upto(child["events"])
            if events:
                ended = events[-1]["type"] in ("ExecutionSucceeded", "ExecutionFailed")
                children.append({"executionArn": child["arn"], "status": "SUCCEEDED" if ended else "RUNNING"})
        return {"executions": children}


def record() -> dict:
    """Rehearse the recording's wave and keep every execution's history, as `watch` reads it."""
    import boto3

    from mgncutover.history import HistoryReader
    from sandbox.runner import Sandbox

    request = json.loads((ROOT / "events" / "console-wave.json").read_text())
    with Sandbox(request, faults=["Copy Image To Target/ec2:CopyImage:denied:1"]) as sandbox:
        arn = sandbox.start(request, name="wave-1-recorded")
        sandbox.wait(arn)
        reader = HistoryReader(boto3.client("stepfunctions", region_name="us-east-1"))
        children = reader.children(arn)
        return {
            "parent": {"arn": arn, "name": "wave-1-recorded", "events": trimmed(reader.history(arn))},
            "children": [{"arn": child["executionArn"], "events": trimmed(reader.history(child["executionArn"]))}
                         for child in children],
        }


if __name__ == "__main__":
    RECORDED.mkdir(exist_ok=True)
    ONE_ROLLED_BACK.write_text(json.dumps(record(), indent=1, default=str) + "\n")
    print(f"wrote {ONE_ROLLED_BACK.relative_to(ROOT)}")
