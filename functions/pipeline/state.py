"""Reading the per-server state that the state machine passes from step to step.

The state is one JSON object: `execution`, `wave`, `options` and `server` from the request,
then one slot per step that the step's result is written to (`cutover`, `image`,
`sharedImage`, `share`, `targetImage`, `restored`, `finalize`, `managed`, `agentInstall`,
`agentConfigure`), and `error` once a Catch has fired.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline import config
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
    ("cleanup", "Clean Up"),
)


# What each poll loop waits for, as its WaitTimedOut names it.
WAIT_NAMES = {"cutover": "cutover launch", "image": "image", "sharedImage": "sharing copy",
              "targetImage": "target image", "restored": "restored instance", "managed": "managed instance",
              "agentInstall": "agent install", "agentConfigure": "agent configuration"}
DEFAULT_MAX_WAIT_SECONDS = 14400


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


def failed_step(state: dict) -> str:
    """The state name of the first step that did not finish (a step with its checks and waits)."""
    for name, step in STEPS_BEFORE_FINALIZE + STEPS_AFTER_FINALIZE:
        value = state.get(name)
        if not value or value.get("ready") is False or (name in POLLED_SLOTS and value.get("ready") is not True):
            return step
    return "Release Server"


def finalized(state: dict) -> bool:
    return bool(slot(state, "finalize").get("finalized"))


def poll_result(state: dict, slot_name: str, ready: bool, **detail: Any) -> dict:
    """The result of one check of a poll loop, counting attempts in the slot itself.

    The Choice after the check loops while `ready` is false; the bound is here, so every loop
    of the state machine ends: after `maxPollAttempts` checks it fails with WaitTimedOut.
    """
    previous = slot(state, slot_name)
    attempts = int(previous.get("attempts", 0)) + 1
    wait = WAIT_NAMES.get(slot_name, slot_name)
    if not ready and attempts >= int(option(state, "maxPollAttempts")):
        raise WaitTimedOut(f"wait for the {wait} gave up: not ready after {attempts} checks")
    started = float(previous.get("waitStartedAt") or time.time())
    deadline = int(state["options"].get("maxWaitSeconds", DEFAULT_MAX_WAIT_SECONDS))
    if not ready and time.time() - started > deadline:
        raise WaitTimedOut(f"wait for the {wait} passed its deadline: not ready after"
                           f" {time.time() - started:.0f} s ({attempts} checks); the deadline is {deadline} s")
    return {**previous, **detail, "ready": ready, "attempts": 0 if ready else attempts,
            "waitStartedAt": None if ready else started}


def agent_config_parameter(state: dict) -> str | None:
    return option(state, "agentConfigParameter") or config.default_agent_config_parameter()
