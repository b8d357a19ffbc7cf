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
