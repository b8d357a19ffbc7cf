"""The rehearsal report a person reads: per-server outcome, then what each account holds."""

from __future__ import annotations

from typing import Any

# Result fields worth showing on a progress line, in the order they are looked for.
_SHOWN = ("cutoverInstanceId", "imageId", "instanceId", "commandId", "grantId", "jobId", "outcome")


def step_outcome(event: dict[str, Any]) -> str:
    """A few words for one step of one server: ok with the id it produced, waiting, or the error."""
    if event["error"]:
        return f"FAILED {event['error']['errorType']}: {event['error']['errorMessage'][:160]}"
    result = event["result"] or {}
    if not isinstance(result, dict):
        return "ok"
    shown = next((f"{key}={result[key]}" for key in _SHOWN if result.get(key)), "")
    if result.get("ready") is False:
        word = f"waiting (check {result['attempts']})" if result.get("attempts") else "started"
        return f"{word} {shown}".strip()
    return f"ok {shown}".strip()


def render(rehearsal, seconds: float) -> str:
    lines = ["", f"Execution {rehearsal.execution}: {rehearsal.status} in {seconds:.1f} s", ""]
    lines += _servers(rehearsal)
    lines += render_timing(getattr(rehearsal, "timing", None) or {})
    injected = getattr(rehearsal, "faults", {}).get("injected")
    if injected:
        lines += ["", "Faults injected: " + ", ".join(f"{fault} x{count}" for fault, count in injected.items())]
    lines += ["", "Inventory"]
    lines += _inventory(rehearsal.inventory)
    return "\n".join(lines)


def _servers(rehearsal) -> list[str]:
    servers = _server_results(rehearsal)
    if not servers:
        detail = rehearsal.cause if isinstance(rehearsal.cause, str) else rehearsal.error
        return [f"No server was cut over: {rehearsal.error}: {detail}"]
    lines = [f"{'source server':<22}{'outcome':<26}{'target account':<16}{'restored instance':<22}private IP"]
    for server in servers:
        lines.append(
            f"{server['sourceServerId']:<22}{server['outcome']:<26}{server['targetAccountId']:<16}"
            f"{server.get('restoredInstanceId') or '-':<22}{server.get('privateIpAddress') or '-'}"
        )
        if server.get("error"):
            lines.append(f"{'':<22}failed at {server.get('failedStep')}: {server['error']['code']}:"
                         f" {server['error']['message'][:200]}")
        if server.get("skippedSteps"):
            lines.append(f"{'':<22}skipped, done by an earlier execution: {', '.join(server['skippedSteps'])}")
        if server.get("leftToDo"):
            lines.append(f"{'':<22}left to do: {', '.join(server['leftToDo'])}")
    return lines


def _server_results(rehearsal) -> list[dict]:
    for source in (rehearsal.output, rehearsal.cause):
        if isinstance(source, dict) and isinstance(source.get("servers"), list):
            return source["servers"]
    return []


def _inventory(inventory: dict) -> list[str]:
    lines = []
    for account, holdings in inventory.get("accounts", {}).items():
        lines.append(f"  account {account}")
        for instance in holdings.get("instances", []):
            lines.append(f"    instance {instance['id']} {instance['state']} {instance.get('type')} "
                         f"{instance.get('subnet')} {instance.get('privateIp')} from {instance.get('image')}")
        for kind in ("images", "snapshots", "kmsGrants", "ssmCommands"):
            items = holdings.get(kind, [])
            if items:
                lines.append(f"    {kind}: {len(items)}")
    for server in inventory.get("mgn", {}).get("sourceServers", []):
        lines.append(f"  MGN source server {server['id']}: {server['lifeCycle']}")
    return lines


# --- simulated time ---------------------------------------------------------------------------------------------

# The steps a server's downtime runs between: from the cutover's start (or its pick-up, when MGN's console
# launched it) to the end of Finalize Cutover, MGN's point of no return.
_CUTOVER_STARTS = ("Start Cutover", "Check Cutover Launch")
_CUTOVER_END = "Finalize Cutover"


def timing(epoch: float, steps: list, operations: list) -> dict:
    """The rehearsal on its simulated clock: the wave's time, and per server its cutover (downtime) and
    end-to-end times, its critical path (the AWS operations it waited for, in order) and the pipeline's
    overhead: end-to-end time minus the time those operations took (overlaps counted once).

    `steps` are the Lambda invocations and `operations` the AWS operations the world modelled, both
    `sandbox.clock.Operation`s; times in the result are seconds from the rehearsal's start.
    """
    if not steps:
        return {"waveSeconds": 0.0, "servers": {}}
    servers = sorted({step.server for step in steps if step.server})
    return {
        "waveSeconds": _round(max(step.end for step in steps) - min(step.start for step in steps)),
        "servers": {server: _server_timing(epoch, [s for s in steps if s.server == server],
                                           [o for o in operations if o.server == server]) for server in servers},
    }


def _server_timing(epoch: float, steps: list, operations: list) -> dict:
    begin, end = min(step.start for step in steps), max(step.end for step in steps)
    operations = sorted(operations, key=lambda op: (op.start, op.end))
    unavoidable = _covered(operations, begin, end)
    started = next((step.start for step in steps if step.name in _CUTOVER_STARTS), None)
    finalized = next((step.end for step in steps if step.name == _CUTOVER_END), None)
    return {
        "cutoverSeconds": _round(finalized - started) if started is not None and finalized is not None else None,
        "cutoverSpans": f"from {_CUTOVER_STARTS[0]} to the end of {_CUTOVER_END} (the downtime)",
        "endToEndSeconds": _round(end - begin),
        "operationSeconds": _round(unavoidable),
        "overheadSeconds": _round(end - begin - unavoidable),
        "criticalPath": [{"operation": op.name, "start": _round(op.start - epoch), "seconds": _round(op.seconds),
                          "fullCopy": op.full_copy} for op in operations],
    }


def _covered(operations: list, begin: float, end: float) -> float:
    """Seconds of [begin, end] during which at least one operation ran."""
    covered, reach = 0.0, begin
    for op in operations:
        start, stop = max(op.start, reach), min(op.end, end)
        if stop > start:
            covered += stop - start
            reach = stop
    return covered


def _round(seconds: float) -> float:
    return round(seconds, 1)


def render_timing(timing_of: dict) -> list[str]:
    """The report's lines for simulated time."""
    if not timing_of.get("servers"):
        return []
    lines = ["", f"Simulated time: the wave took {_duration(timing_of['waveSeconds'])}"]
    for server, times in timing_of["servers"].items():
        cutover = times["cutoverSeconds"]
        lines.append(f"  {server}: cutover (downtime, Start Cutover to Finalize Cutover) "
                     f"{_duration(cutover) if cutover is not None else '-'}, end to end "
                     f"{_duration(times['endToEndSeconds'])}, pipeline overhead {_duration(times['overheadSeconds'])}")
        for op in times["criticalPath"]:
            copy = "  full copy" if op["fullCopy"] else ""
            lines.append(f"    +{_duration(op['start']):>10}  {_duration(op['seconds']):>9}  {op['operation']}{copy}")
    return lines


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{rest:02d}s" if hours else f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.1f}s"
