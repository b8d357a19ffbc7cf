"""`invoke FUNCTION --event FILE`: run one function against a sandbox world, as `sam local
invoke` would run it against an account.

An event for a step in the middle of a cutover names artifacts of the steps before it (a
cutover instance, an image) that a fresh world does not have. So the sandbox first runs the
real state machine for the event's server up to the point the event describes, the first
task whose state holds every slot the event holds, and stops it there. The function then
runs with the event as written, except that those slots carry what the sandbox created, so
that every id it acts on exists.
"""

from __future__ import annotations

from typing import Any

from sandbox.runner import Sandbox, SandboxError

# Fields of the per-server state that come from the request rather than from a step.
_REQUEST_FIELDS = ("execution", "wave", "options", "server", "mode", "waveServers")


class _Stop(Exception):
    """Raised in place of every task once the rehearsal reached the event's point."""


def invoke_function(function: str, event: Any, world: dict | None = None) -> Any:
    """Run `function` with `event`; return its result, or Lambda's error payload."""
    state = _state_of(event)
    request = _request_for(event, state)
    with Sandbox(request, world) as sandbox:
        logical_id = sandbox.logical_id(function)
        if state is not None:
            real = _run_until(sandbox, logical_id, state)
            event = _with_real_slots(event, state, real)
        try:
            return sandbox.invoke(logical_id, event)
        except Exception as err:  # noqa: BLE001 - shown to the user as Lambda shows it
            return {"errorType": type(err).__name__, "errorMessage": str(err)}


def _state_of(event: Any) -> dict | None:
    """The per-server state inside the event, or None for an event that has none."""
    if not isinstance(event, dict):
        return None
    candidate = event.get("state", event)
    return candidate if isinstance(candidate, dict) and "server" in candidate else None


def _request_for(event: Any, state: dict | None) -> Any:
    """The request whose world the event needs."""
    if state is not None:
        request = {"wave": state.get("wave", "wave"), "servers": [_request_server(state["server"])],
                   "options": state.get("options", {})}
        # A preflight's per-server state says so: the rehearsal then runs the preflight, not a cutover.
        return {**request, "mode": state["mode"]} if state.get("mode") else request
    if isinstance(event, dict) and isinstance(event.get("results"), list):
        return {"servers": [{"sourceServerId": result["sourceServerId"],
                             "target": {"accountId": result["targetAccountId"]}} for result in event["results"]]}
    if isinstance(event, dict) and "input" in event and "execution" in event:
        # The Normalize Request step's event: the raw request (or EventBridge event) as started.
        return _request_for(event["input"], None)
    if isinstance(event, dict) and "detail" in event and isinstance(event["detail"], dict):
        return event["detail"] if "servers" in event["detail"] else event
    return event


def _request_server(server: dict) -> dict:
    return {key: value for key, value in server.items() if key != "launchJobId" or value}


def _slots(state: dict) -> set[str]:
    return {key for key in state if key not in _REQUEST_FIELDS and key != "error"}


def _run_until(sandbox: Sandbox, logical_id: str, state: dict) -> dict:
    """Run the state machine until a task's state holds every slot of `state`; return it."""
    wanted = _slots(state)
    captured: dict[str, Any] = {}
    original_call = sandbox._call

    def call(function_id: str, event: Any) -> dict:
        if captured:
            raise _Stop()
        current = _state_of(event)
        if current is not None and (function_id == logical_id or _reached(current, state, wanted)):
            captured["state"] = current
            raise _Stop()
        return original_call(function_id, event)

    sandbox._call = _stopping(call)
    try:
        sandbox.wait(sandbox.start(sandbox.request, name="invoke-prefix"))
    finally:
        sandbox._call = original_call
    if "state" not in captured:
        raise SandboxError(f"the rehearsal never reached the point of the event for {logical_id}")
    return captured["state"]


def _reached(current: dict, event_state: dict, wanted: set[str]) -> bool:
    if not wanted <= _slots(current):
        return False
    # A poll slot must also be as ready as in the event: an image not yet available is the
    # state the Check Image step sees, an available one the state after it.
    return all(current[slot].get("ready") == event_state[slot].get("ready")
               for slot in wanted if isinstance(event_state[slot], dict) and "ready" in event_state[slot])


def _stopping(call):
    def wrapper(function_id: str, event: Any) -> dict:
        try:
            return call(function_id, event)
        except _Stop as stop:
            return {"error": True, "exception": stop,
                    "payload": {"errorType": "SandboxStop", "errorMessage": "the event's point was reached"}}

    return wrapper


def _with_real_slots(event: dict, written: dict, real: dict) -> dict:
    merged = dict(written)
    for slot in _slots(written):
        merged[slot] = real[slot]
    merged["execution"] = real["execution"]
    return {**event, "state": merged} if "state" in event else merged
