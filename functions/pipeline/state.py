"""Reading the per-server state that the state machine passes from step to step.

The state is one JSON object: `execution`, `wave`, `options` and `server` from the request,
then one slot per step that the step's result is written to (`cutover`, `image`,
`sharedImage`, `share`, `targetImage`, `restored`, `finalize`, `managed`, `agentInstall`,
`agentConfigure`), and `error` once a Catch has fired.
"""

from __future__ import annotations

from typing import Any

from pipeline import clock, config
from pipeline.errors import WaitTimedOut

# The steps before the point of no return, each with the slot its result is written to and
# the state name it has in the ASL. A slot that is missing, or present but not ready, is the
# step a failure happened in.
STEPS_BEFORE_FINALIZE = (
    ("claim", "Claim Server"),
    ("cutover", "Start Cutover"),
    ("image", "Create Image"),
    ("sharedImage", "Copy Image For Sharing"),
    ("share", "Share With Target"),
    ("targetImage", "Copy Image To Target"),
    ("restored", "Launch Restored Instance"),
    ("finalize", "Finalize Cutover"),
)
STEPS_AFTER_FINALIZE = (
    ("managed", "Wait For Managed Instance"),
    ("agentInstall", "Install Agent"),
    ("agentConfigure", "Configure Agent"),
    ("targetImage", "Copy Image To Target"),
    ("cleanup", "Clean Up"),
)
AGENT_SLOTS = frozenset({"managed", "agentInstall", "agentConfigure"})

# `options.restoreFrom`: the restored instance is launched from the shared image (the target's own copy
# is started before the launch, or after the agent steps when EC2 had no copy slot, and waited for after
# the agent steps), or from the target's copy.
FROM_SHARED_IMAGE = "sharedImage"
FROM_TARGET_IMAGE = "targetImage"


# What each poll loop waits for, as its WaitTimedOut names it.
WAIT_NAMES = {"cutover": "cutover launch", "image": "image", "sharedImage": "sharing copy",
              "targetImage": "target image", "restored": "restored instance", "managed": "managed instance",
              "agentInstall": "agent install", "agentConfigure": "agent configuration"}
DEFAULT_MAX_WAIT_SECONDS = 14400
# Each wait of a poll loop is this share of the time the loop has waited so far (at least the request's
# pollIntervalSeconds): an operation that finishes between two checks is noticed within 5% of its
# duration, or within the shortest wait, whatever it takes, with few checks for a long one.
NOTICE_SHARE = 0.05


def source_server_id(state: dict) -> str:
    return state["server"]["sourceServerId"]


def target(state: dict) -> dict:
    return state["server"]["target"]


def target_account(state: dict) -> str:
    return target(state)["accountId"]


def execution(state: dict) -> str:
    return state["execution"]


def option(state: dict, name: str) -> Any:
    return state["options"][name]


def slot(state: dict, name: str) -> dict:
    return state.get(name) or {}


# Slots a poll loop finishes: done only once a check said ready (Start Cutover writes its slot
# without `ready`, and the launch may fail on the first check).
POLLED_SLOTS = frozenset({"cutover", "image", "sharedImage", "targetImage", "restored", "managed", "agentInstall",
                          "agentConfigure"})


def restore_from(state: dict) -> str:
    # Normalize Request always sets it; a state from before the option existed (an execution in flight when
    # the stack was updated, a hand-written event) restores the default way.
    return state["options"].get("restoreFrom", FROM_SHARED_IMAGE)


def steps_in_order(state: dict) -> list[tuple[str, str, bool]]:
    """(slot, state name, started-is-enough) of every step this server runs, in the order it runs them.

    From the shared image, Copy Image To Target is only started before the launch, or found no copy slot
    (either is enough to go on), and is started or waited for after the agent steps; from the target image it
    is waited for before the launch.
    """
    shared = restore_from(state) == FROM_SHARED_IMAGE
    steps = [(name, step, shared and name == "targetImage") for name, step in STEPS_BEFORE_FINALIZE]
    for name, step in STEPS_AFTER_FINALIZE:
        if name in AGENT_SLOTS and not state["options"].get("installAgent", True):
            continue
        if name == "targetImage" and not shared:
            continue
        steps.append((name, step, False))
    return steps


def finished(state: dict, name: str) -> bool:
    """Whether the step writing slot `name` is done: its slot present, and ready when the step is a poll loop."""
    value = state.get(name)
    return bool(value) and value.get("ready") is not False and (name not in POLLED_SLOTS or value.get("ready") is True)


def failed_step(state: dict) -> str:
    """The state name of the first step that did not finish (a step with its checks and waits)."""
    for name, step, started_is_enough in steps_in_order(state):
        done = _started(slot(state, name)) if started_is_enough else finished(state, name)
        if not done:
            return step
    return "Release Server"


def _started(value: dict) -> bool:
    # A copy that found no free slot is started again after the agent steps: the launch went on without it.
    return bool(value.get("imageId")) or value.get("waitingForSlot") is True


def finished_steps(state: dict) -> set[str]:
    """State names of the steps after finalize that did finish (a follow-up need not list them)."""
    return {step for name, step in STEPS_AFTER_FINALIZE if name != "cleanup" and finished(state, name)}


def finalized(state: dict) -> bool:
    return bool(slot(state, "finalize").get("finalized"))


def poll_result(state: dict, slot_name: str, ready: bool, **detail: Any) -> dict:
    """The result of one check of a poll loop, counting attempts in the slot itself.

    The Choice after the check loops while `ready` is false, through a Wait of the slot's
    `nextWaitSeconds`; the bound is here, so every loop of the state machine ends: after
    `maxPollAttempts` checks, or past `maxWaitSeconds`, it fails with WaitTimedOut.
    """
    previous = slot(state, slot_name)
    attempts = int(previous.get("attempts", 0)) + 1
    wait = WAIT_NAMES.get(slot_name, slot_name)
    if not ready and attempts >= int(option(state, "maxPollAttempts")):
        raise WaitTimedOut(f"wait for the {wait} gave up: not ready after {attempts} checks")
    now = clock.now()
    started = float(previous.get("waitStartedAt") or now)
    deadline = int(state["options"].get("maxWaitSeconds", DEFAULT_MAX_WAIT_SECONDS))
    if not ready and now - started > deadline:
        raise WaitTimedOut(f"wait for the {wait} passed its deadline: not ready after"
                           f" {now - started:.0f} s ({attempts} checks); the deadline is {deadline} s")
    if ready:
        return {**previous, **detail, "ready": True, "attempts": 0, "waitStartedAt": None, "nextWaitSeconds": None}
    return {**previous, **detail, "ready": False, "attempts": attempts, "waitStartedAt": started,
            "nextWaitSeconds": next_wait_seconds(state, now - started)}


def next_wait_seconds(state: dict, waited: float) -> int:
    """How long to wait before the next check, `waited` seconds into a poll loop.

    A share of the time waited so far, never below the request's pollIntervalSeconds, and never far
    past the loop's deadline (the check after it gives up). Whole seconds, as a Wait state takes them.
    """
    floor = int(option(state, "pollIntervalSeconds"))
    deadline = int(state["options"].get("maxWaitSeconds", DEFAULT_MAX_WAIT_SECONDS))
    grown = max(floor, int(NOTICE_SHARE * waited))
    return max(1, min(grown, int(deadline - waited) + 1))


def first_wait(state: dict) -> dict:
    """The slot fields of a step that starts an operation and waits before its first check."""
    return {"waitStartedAt": clock.now(), "nextWaitSeconds": int(option(state, "pollIntervalSeconds"))}


def agent_config_parameter(state: dict) -> str | None:
    return option(state, "agentConfigParameter") or config.default_agent_config_parameter()
