"""Reading an execution's history and its Distributed Map children's, with boto3.

Each poll reads what the parent's history gained, lists its map runs and their child executions,
and reads what the history of every child that has not ended gained (an ended child's is kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

# A Standard execution keeps at most 25,000 events: 25 pages of 1,000, and a margin.
MAX_HISTORY_PAGES = 30
# Events read per page once a history is known: enough for what a few seconds add.
NEWEST_PAGE = 100
# Child executions per map run: a wave holds at most 200 servers; a redrive adds more children.
MAX_CHILD_PAGES = 20


@dataclass
class Snapshot:
    """What one poll read: the parent's description and history, and each child's history."""

    described: dict
    parent: list[dict]
    children: list[list[dict]]


@dataclass
class HistoryReader:
    sfn: Any
    _events: dict[str, list[dict]] = field(default_factory=dict)
    _ended_children: dict[str, list[dict]] = field(default_factory=dict)

    def read(self, execution_arn: str) -> Snapshot:
        described = self.sfn.describe_execution(executionArn=execution_arn)
        parent = self.history(execution_arn)
        children = [self._child_history(child) for child in self.children(execution_arn)]
        return Snapshot(described=described, parent=parent, children=children)

    def history(self, execution_arn: str) -> list[dict]:
        """The execution's events; after the first read, only the events added since (newest first)."""
        known = self._events.get(execution_arn)
        if known is None:
            known = self._pages(execution_arn)
        else:
            last = known[-1]["id"] if known else 0
            added: list[dict] = []
            token = None
            for _ in range(MAX_HISTORY_PAGES):
                page = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=NEWEST_PAGE,
                                                      reverseOrder=True, **({"nextToken": token} if token else {}))
                fresh = [event for event in page["events"] if event["id"] > last]
                added += fresh
                token = page.get("nextToken")
                if len(fresh) < len(page["events"]) or not token:
                    break
            known = known + sorted(added, key=lambda event: event["id"])
        self._events[execution_arn] = known
        return known

    def _pages(self, execution_arn: str) -> list[dict]:
        events: list[dict] = []
        token = None
        for _ in range(MAX_HISTORY_PAGES):
            page = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000,
                                                  **({"nextToken": token} if token else {}))
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                break
        return sorted(events, key=lambda event: event["id"])

    def children(self, execution_arn: str) -> list[dict]:
        """The child executions of every map run of the execution (none before the map starts)."""
        found = []
        for map_run in self.sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", []):
            token = None
            for _ in range(MAX_CHILD_PAGES):
                try:
                    page = self.sfn.list_executions(mapRunArn=map_run["mapRunArn"], maxResults=1000,
                                                    **({"nextToken": token} if token else {}))
                except ClientError as err:
                    # A map run that has just started may not list its children yet.
                    if err.response["Error"]["Code"] in ("ResourceNotFound", "ResourceNotFoundException"):
                        break
                    raise
                found += page.get("executions", [])
                token = page.get("nextToken")
                if not token:
                    break
        return found

    def _child_history(self, child: dict) -> list[dict]:
        arn = child["executionArn"]
        if arn in self._ended_children:
            return self._ended_children[arn]
        # NOTE: each poll reads one page of every running child's history: a wave of hundreds of
        # servers in flight, polled every few seconds, meets GetExecutionHistory's throttling, which
        # the SDK's retries absorb by slowing the poll down.
        events = self.history(arn)
        if child.get("status") not in (None, "RUNNING", "PENDING_REDRIVE"):
            self._ended_children[arn] = events
        return events
