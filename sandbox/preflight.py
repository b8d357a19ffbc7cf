"""`python -m sandbox preflight REQUEST`: the state machine's preflight mode rehearsed, as a table of checks.

Any request can be preflighted: its `mode` is set to "preflight" (in a Cutover Requested event, in its detail).
The per-server results are read from the execution's history (the Summarize Preflight step's output), so the
table shows every check, also when the execution failed with PreflightFailed.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from sandbox.runner import REGION, Rehearsal, Sandbox

SUMMARY_STATE = "Summarize Preflight"
COLUMNS = ("server", "check", "result", "fix")


def as_preflight(request: dict) -> dict:
    """The request with mode "preflight", wherever its body is."""
    if isinstance(request.get("detail"), dict) and "detail-type" in request:
        return {**request, "detail": {**request["detail"], "mode": "preflight"}}
    return {**request, "mode": "preflight"}


def run(request: dict, world: dict | None = None) -> tuple[Rehearsal, list[dict]]:
    """Rehearse the request's preflight; the execution and each server's preflight line."""
    with Sandbox(as_preflight(request), world) as sandbox:
        rehearsal = sandbox.rehearse()
        return rehearsal, server_results(rehearsal)


def server_results(rehearsal: Rehearsal) -> list[dict]:
    """Each server's preflight, as Summarize Preflight was given it (empty if the preflight never got there)."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = next(e["executionArn"] for page in sfn.get_paginator("list_executions").paginate(
        stateMachineArn=_state_machine_arn(sfn)) for e in page["executions"] if e["name"] == rehearsal.execution)
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        for event in page["events"]:
            exited = event.get("stateExitedEventDetails") or {}
            if exited.get("name") == SUMMARY_STATE:
                return json.loads(exited["output"]).get("results", [])
    return []


def _state_machine_arn(sfn: Any) -> str:
    return sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]


def rows(servers: list[dict]) -> list[tuple[str, str, str, str]]:
    """One row per check that did not simply pass, and one per server whose every check passed."""
    found = []
    for server in servers:
        interesting = [c for c in server.get("checks", []) if c["result"] != "pass"]
        if server.get("error"):
            found.append((server["sourceServerId"], "preflight", "FAIL", str(server["error"].get("Cause", ""))[:200]))
        for check in interesting:
            found.append((server["sourceServerId"], check["check"], check["result"].upper(), check["fix"] or ""))
        if not interesting and not server.get("error"):
            found.append((server["sourceServerId"], f"all {len(server.get('checks', []))} checks", "PASS", ""))
    return found


def render(rehearsal: Rehearsal, servers: list[dict]) -> str:
    table = [COLUMNS, *rows(servers)]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip()
             for row in table]
    ready = sum(1 for server in servers if server.get("passed"))
    if not servers:
        # The preflight never ran (an invalid request fails in its first state): say why.
        cause = rehearsal.cause
        cause = cause.get("errorMessage", cause) if isinstance(cause, dict) else cause
        lines.append(f"{rehearsal.error}: {cause}")
    lines.append("")
    lines.append(f"Preflight {rehearsal.status}: {ready} of {len(servers)} servers ready; nothing was changed.")
    return "\n".join(lines)
