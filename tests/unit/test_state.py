"""Reading the per-server state: bounded polls, and which step a failure happened in."""

from __future__ import annotations

import pytest

from pipeline import state
from pipeline.errors import WaitTimedOut
from tests.unit.support import server_state


def without_clock(slot: dict) -> dict:
    """A slot without the wait's start time, which the deadline tests look at on their own."""
    return {key: value for key, value in slot.items() if key != "waitStartedAt"}


def test_each_pending_check_counts_one_attempt_and_keeps_the_slot():
    # GIVEN an image being created, checked once already
    current = server_state(options={"maxPollAttempts": 5}, image={"imageId": "ami-1", "ready": False, "attempts": 1})

    # WHEN it is checked again and is still pending
    result = state.poll_result(current, "image", False, imageState="pending")

    # THEN the count goes up and what the slot held is kept
    assert without_clock(result) == {"imageId": "ami-1", "ready": False, "attempts": 2, "imageState": "pending"}


def test_a_ready_check_resets_the_count():
    # GIVEN a poll that has waited three times
    current = server_state(options={"maxPollAttempts": 5}, image={"imageId": "ami-1", "ready": False, "attempts": 3})

    # WHEN the check finds it ready
    result = state.poll_result(current, "image", True, imageState="available")

    # THEN the slot is ready, with no attempts left counted and no wait running
    assert without_clock(result) == {"imageId": "ami-1", "ready": True, "attempts": 0, "imageState": "available"}
    assert result["waitStartedAt"] is None


def test_first_check_of_an_empty_slot_counts_one():
    # GIVEN a slot no check has written yet
    current = server_state(options={"maxPollAttempts": 5})

    # WHEN / THEN the first pending check counts one
    assert without_clock(state.poll_result(current, "managed", False)) == {"ready": False, "attempts": 1}


def test_poll_times_out_at_max_poll_attempts():
    # GIVEN at most three checks
    current = server_state(options={"maxPollAttempts": 3})

    # WHEN the first two checks find it pending
    for _ in range(2):
        current["restored"] = state.poll_result(current, "restored", False)

    # THEN the third pending check fails the wait, naming the slot and the count
    assert current["restored"]["attempts"] == 2
    with pytest.raises(WaitTimedOut, match="wait for the restored instance gave up: not ready after 3 checks"):
        state.poll_result(current, "restored", False)


def test_last_allowed_check_may_still_succeed():
    # GIVEN two checks have already been pending out of three
    current = server_state(options={"maxPollAttempts": 3}, restored={"ready": False, "attempts": 2})

    # WHEN the last check finds it ready, THEN there is no timeout
    assert state.poll_result(current, "restored", True)["ready"] is True


def test_a_wait_remembers_when_it_started(monkeypatch):
    # GIVEN a poll whose first check happens at some moment
    monkeypatch.setattr(state.time, "time", lambda: 1000.0)
    current = server_state(options={"maxPollAttempts": 100, "maxWaitSeconds": 600})
    current["image"] = state.poll_result(current, "image", False)

    # WHEN later checks are pending too
    monkeypatch.setattr(state.time, "time", lambda: 1500.0)
    current["image"] = state.poll_result(current, "image", False)

    # THEN the start stays the first check's moment
    assert current["image"]["waitStartedAt"] == 1000.0


def test_a_wait_past_its_deadline_gives_up_whatever_the_count(monkeypatch):
    # GIVEN a wait that started ten minutes and one second ago, with checks to spare
    monkeypatch.setattr(state.time, "time", lambda: 1601.0)
    current = server_state(
        options={"maxPollAttempts": 100, "maxWaitSeconds": 600},
        targetImage={"imageId": "ami-3", "ready": False, "attempts": 2, "waitStartedAt": 1000.0},
    )

    # WHEN / THEN the next pending check gives up, naming the wait and the deadline
    with pytest.raises(WaitTimedOut, match="wait for the target image passed its deadline.*the deadline is 600 s"):
        state.poll_result(current, "targetImage", False)


def test_a_ready_check_after_the_deadline_still_succeeds(monkeypatch):
    # GIVEN a wait past its deadline / WHEN the check finds it ready / THEN it succeeds
    monkeypatch.setattr(state.time, "time", lambda: 5000.0)
    current = server_state(
        options={"maxWaitSeconds": 600}, restored={"ready": False, "attempts": 2, "waitStartedAt": 1000.0}
    )
    assert state.poll_result(current, "restored", True)["ready"] is True


def test_a_single_attempt_poll_does_not_wait():
    # GIVEN maxPollAttempts 1
    current = server_state(options={"maxPollAttempts": 1})

    # WHEN / THEN the first pending check already times out
    with pytest.raises(WaitTimedOut):
        state.poll_result(current, "image", False)


CLAIMED = {"claimed": True, "artifacts": {}}
CUTOVER_LAUNCHED = {"jobId": "mgnjob-1", "ready": True, "attempts": 0, "cutoverInstanceId": "i-1"}
IMAGE = {"imageId": "ami-1", "ready": True, "attempts": 0}
SHARED = {"imageId": "ami-2", "copied": True, "ready": True, "attempts": 0}
SHARE = {"accountId": "222222222222", "imageId": "ami-2", "snapshotIds": [], "grantId": "g"}
TARGET_IMAGE = {"imageId": "ami-3", "ready": True, "attempts": 0}
RESTORED = {"instanceId": "i-2", "ready": True, "attempts": 0}


@pytest.mark.parametrize(
    "slots, step",
    [
        ({}, "Claim Server"),
        ({"claim": CLAIMED}, "Start Cutover"),
        ({"claim": CLAIMED, "cutover": {"jobId": "mgnjob-1", "ready": False, "attempts": 2}}, "Start Cutover"),
        ({"claim": CLAIMED, "cutover": CUTOVER_LAUNCHED}, "Create Image"),
        (
            {"claim": CLAIMED, "cutover": CUTOVER_LAUNCHED, "image": {"imageId": "ami-1", "ready": False}},
            "Create Image",
        ),
        ({"claim": CLAIMED, "cutover": CUTOVER_LAUNCHED, "image": IMAGE}, "Copy Image For Sharing"),
        ({"claim": CLAIMED, "cutover": CUTOVER_LAUNCHED, "image": IMAGE, "sharedImage": SHARED}, "Share With Target"),
        (
            {"claim": CLAIMED, "cutover": CUTOVER_LAUNCHED, "image": IMAGE, "sharedImage": SHARED, "share": SHARE},
            "Copy Image To Target",
        ),
        (
            {
                "claim": CLAIMED, "cutover": CUTOVER_LAUNCHED, "image": IMAGE, "sharedImage": SHARED, "share": SHARE,
                "targetImage": TARGET_IMAGE, "restored": {"instanceId": "i-2", "ready": False, "attempts": 4},
            },
            "Launch Restored Instance",
        ),
        (
            {
                "claim": CLAIMED, "cutover": CUTOVER_LAUNCHED, "image": IMAGE, "sharedImage": SHARED, "share": SHARE,
                "targetImage": TARGET_IMAGE, "restored": RESTORED,
            },
            "Finalize Cutover",
        ),
        (
            {
                "claim": CLAIMED, "cutover": CUTOVER_LAUNCHED, "image": IMAGE, "sharedImage": SHARED, "share": SHARE,
                "targetImage": TARGET_IMAGE, "restored": RESTORED, "finalize": {"finalized": True},
            },
            "Wait For Managed Instance",
        ),
        (
            {
                "claim": CLAIMED, "cutover": CUTOVER_LAUNCHED, "image": IMAGE, "sharedImage": SHARED, "share": SHARE,
                "targetImage": TARGET_IMAGE, "restored": RESTORED, "finalize": {"finalized": True},
                "managed": {"ready": True}, "agentInstall": {"ready": True}, "agentConfigure": {"ready": False},
            },
            "Configure Agent",
        ),
        (
            {
                "claim": CLAIMED, "cutover": CUTOVER_LAUNCHED, "image": IMAGE, "sharedImage": SHARED, "share": SHARE,
                "targetImage": TARGET_IMAGE, "restored": RESTORED, "finalize": {"finalized": True},
                "managed": {"ready": True}, "agentInstall": {"ready": True}, "agentConfigure": {"ready": True},
                "cleanup": {"removed": [], "failures": [], "ready": True},
            },
            "Release Server",
        ),
    ],
)
def test_failed_step_is_the_first_unfinished_one(slots, step):
    # GIVEN the state as the Catch left it
    current = server_state(**slots)

    # WHEN / THEN the failed step is the first one whose slot is missing or not ready
    assert state.failed_step(current) == step


def test_finalized_reads_the_finalize_slot():
    # GIVEN a state with and without the finalize slot / WHEN read / THEN finalized says so
    assert state.finalized(server_state(finalize={"finalized": True})) is True
    assert state.finalized(server_state()) is False


def test_agent_parameter_falls_back_to_the_stack_default(monkeypatch):
    # GIVEN no parameter in the options, and a stack default
    monkeypatch.setenv("DEFAULT_AGENT_CONFIG_PARAMETER", "AmazonCloudWatch-default")

    # WHEN / THEN the default is used; a request's own parameter wins
    assert state.agent_config_parameter(server_state()) == "AmazonCloudWatch-default"
    assert state.agent_config_parameter(server_state(options={"agentConfigParameter": "AmazonCloudWatch-web"})) == (
        "AmazonCloudWatch-web"
    )


def test_agent_parameter_is_none_without_request_or_default(monkeypatch):
    # GIVEN neither request nor stack names one / WHEN read / THEN there is none
    monkeypatch.delenv("DEFAULT_AGENT_CONFIG_PARAMETER", raising=False)
    assert state.agent_config_parameter(server_state()) is None
