"""The end of a server's branch and of the wave: per-server report, summary, notification."""

from __future__ import annotations

import json
import re

from pipeline import approval, ledger, notify, state
from aws_lambda_powertools.metrics import MetricUnit

from pipeline.observability import logger, metrics

CUT_OVER = "CUT_OVER"
CUT_OVER_WITH_FOLLOW_UP = "CUT_OVER_WITH_FOLLOW_UP"
ROLLED_BACK = "ROLLED_BACK"
ROLLBACK_INCOMPLETE = "ROLLBACK_INCOMPLETE"
REFUSED = "REFUSED"


def release(current: dict) -> dict:
    """Release the server's claim and return its line of the wave report."""
    report = server_report(current)
    if report["outcome"] != REFUSED:
        ledger.release(state.source_server_id(current), state.execution(current), report["outcome"])
    if approval.required(current):
        # A branch that ended (failed, refused, cut over before) must not hold the wave's approval back.
        approval.withdraw(current, report["outcome"])
    logger.info("Server released", outcome=report["outcome"])
    # One count per server and outcome: the dashboard's and the alarms' view of a wave.
    metrics.add_dimension(name="Outcome", value=report["outcome"])
    metrics.add_metric(name="Servers", unit=MetricUnit.Count, value=1)
    return report


def server_report(current: dict) -> dict:
    restored = state.slot(current, "restored")
    report = {
        "sourceServerId": state.source_server_id(current),
        "targetAccountId": state.target_account(current),
        "outcome": _outcome(current),
        "restoredInstanceId": restored.get("instanceId") if state.finalized(current) else None,
        "privateIpAddress": restored.get("privateIpAddress") if state.finalized(current) else None,
    }
    if current.get("error"):
        report["failedStep"] = current.get("failedStep") or state.failed_step(current)
        report["error"] = error_of(current["error"])
    if current.get("rollback"):
        report["rollback"] = current["rollback"]
    if state.slot(current, "finalize").get("resumed"):
        # An earlier execution did everything up to finalize; this one did only what followed.
        # NOTE: the restored instance's private IP is not in the ledger, so a resumed report has none.
        report["skippedSteps"] = [step for name, step in state.STEPS_BEFORE_FINALIZE
                                  if name not in ("claim", "cutover")]
    if report["outcome"] == CUT_OVER_WITH_FOLLOW_UP:
        report["leftToDo"] = left_to_do(current, report.get("failedStep"))
    return report


def left_to_do(current: dict, failed_step: str | None) -> list[str]:
    """After finalize, the steps still to run by hand (or by a new execution for the server)."""
    steps = [step for _, step in state.STEPS_AFTER_FINALIZE]
    todo = steps[steps.index(failed_step):] if failed_step in steps else []
    # A step after the failed one may still have run (the target's copy is waited for after an agent
    # failure too); one that finished is not left to do.
    todo = [step for step in todo if step not in state.finished_steps(current)]
    if not current.get("options", {}).get("installAgent", True):
        todo = [step for step in todo if step not in ("Wait For Managed Instance", "Install Agent", "Configure Agent")]
    cleaned = not current.get("cleanupError") and not state.slot(current, "cleanup").get("failures")
    return [step for step in todo if step != "Clean Up" or not cleaned]


def _outcome(current: dict) -> str:
    error = current.get("error")
    if not current.get("claim"):
        # The server was never claimed (another execution holds it): nothing was done to it.
        return REFUSED
    if state.finalized(current):
        follow_up = error or current.get("cleanupError") or current.get("cleanup", {}).get("failures")
        return CUT_OVER_WITH_FOLLOW_UP if follow_up else CUT_OVER
    if current.get("rollback", {}).get("complete") is False or current.get("rollbackError"):
        return ROLLBACK_INCOMPLETE
    return ROLLED_BACK


def error_of(caught: dict) -> dict:
    """The error a Catch recorded, as {type, code, message}: the AWS error code when there is one."""
    error_type = caught.get("Error", "Unknown")
    message = caught.get("Cause", "")
    try:
        cause = json.loads(message)
        message = cause.get("errorMessage", message)
        error_type = cause.get("errorType", error_type)
    except (TypeError, ValueError):
        pass
    aws_code = re.search(r"An error occurred \(([^)]+)\)", message)
    return {"type": error_type, "code": aws_code.group(1) if aws_code else error_type, "message": message[:1000]}


# A Fail state's cause keeps 32,768 characters; some room is left for what Step Functions adds.
MAX_CAUSE_CHARACTERS = 32_000


def summarize(wave: str, execution: str, results: list[dict]) -> dict:
    """The wave summary; published to the notification topic."""
    failed = [result for result in results if result["outcome"] not in (CUT_OVER, CUT_OVER_WITH_FOLLOW_UP)]
    summary = {
        "wave": wave,
        "execution": execution,
        "total": len(results),
        "cutOver": len(results) - len(failed),
        "failed": len(failed),
        "servers": results,
    }
    summary["subject"] = f"Cutover wave {wave}: {summary['cutOver']} of {summary['total']} cut over"[:100]
    notify.publish(summary["subject"], render(summary),
                   {"wave": wave, "outcome": "FAILED" if failed else "SUCCEEDED", "failed": len(failed)})
    logger.info("Wave summarized", total=summary["total"], failed=summary["failed"])
    # The report lines stay in the state once ($.servers); the summary gives the counts, and the
    # cause the Fail state that ends a failed wave carries.
    summary["cause"] = cause(summary, failed)
    del summary["servers"]
    return summary


def cause(summary: dict, failed: list[dict]) -> str:
    """The wave's summary as the Fail state's cause, within the 32,768 characters Step Functions keeps.

    Every server while they fit; else the failed ones, as many as fit, and how many were left out
    (the notification and the execution's output list them all).
    """
    fields = {key: summary[key] for key in ("wave", "execution", "total", "cutOver", "failed")}
    text = json.dumps({**fields, "servers": summary["servers"]})
    if len(text) <= MAX_CAUSE_CHARACTERS:
        return text
    shown = list(failed)
    while shown:
        text = json.dumps({**fields, "servers": shown, "serversLeftOut": summary["total"] - len(shown)})
        if len(text) <= MAX_CAUSE_CHARACTERS:
            return text
        shown = shown[: len(shown) * 3 // 4]
    return json.dumps({**fields, "servers": [], "serversLeftOut": summary["total"]})


def render(summary: dict) -> str:
    """The notification as a person reads it: one line per server."""
    lines = [summary["subject"], f"Execution: {summary['execution']}", ""]
    for server in summary["servers"]:
        if server["outcome"] in (CUT_OVER, CUT_OVER_WITH_FOLLOW_UP):
            line = "  ".join(str(server[key]) for key in (
                "sourceServerId", "outcome", "targetAccountId", "restoredInstanceId", "privateIpAddress"))
        else:
            line = f"{server['sourceServerId']}  {server['outcome']}  at {server.get('failedStep')}"
        if server.get("error"):
            line += f"  {server['error']['code']}: {server['error']['message'][:200]}"
        lines.append(line)
    return "\n".join(lines)
