"""Reading the per-server state: bounded polls, and which step a failure happened in."""

from __future__ import annotations

import pytest

from pipeline import clock, state
from pipeline.errors import WaitTimedOut
from pipeline.request import Options
from tests.unit.support import server_state


def without_clock(slot: dict) -> dict:
    """A slot without the wait's start time and next interval, which the timing tests look at on their own."""
    return {key: value for key, value in slot.items() if key not in ("waitStartedAt", "nextWaitSeconds")}


@pytest.fixture
def at(monkeypatch):
    """Set what the pipeline's clock reads: `at(1000.0)`."""
    def set_time(seconds: float) -> None:
        monkeypatch.setattr(clock, "_source", lambda: seconds)

    return set_time


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


def test_a_wait_remembers_when_it_started(at):
    # GIVEN a poll whose first check happens at some moment
    at(1000.0)
    current = server_state(options={"maxPollAttempts": 100, "maxWaitSeconds": 600})
    current["image"] = state.poll_result(current, "image", False)

    # WHEN later checks are pending too
    at(1500.0)
    current["image"] = state.poll_result(current, "image", False)

    # THEN the start stays the first check's moment
    assert current["image"]["waitStartedAt"] == 1000.0


def test_a_wait_past_its_deadline_gives_up_whatever_the_count(at):
    # GIVEN a wait that started ten minutes and one second ago, with checks to spare
    at(1601.0)
    current = server_state(
        options={"maxPollAttempts": 100, "maxWaitSeconds": 600},
        targetImage={"imageId": "ami-3", "ready": False, "attempts": 2, "waitStartedAt": 1000.0},
    )

    # WHEN / THEN the next pending check gives up, naming the wait and the deadline
    with pytest.raises(WaitTimedOut, match="wait for the target image passed its deadline.*the deadline is 600 s"):
        state.poll_result(current, "targetImage", False)


def test_a_ready_check_after_the_deadline_still_succeeds(at):
    # GIVEN a wait past its deadline / WHEN the check finds it ready / THEN it succeeds
    at(5000.0)
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


# --- the interval between checks ---------------------------------------------------------------------------------


def checks_of(operation_seconds: float, floor: int, deadline: int = 86400) -> tuple[float, int]:
    """Run a poll loop the way the state machine does (check, then Wait nextWaitSeconds) against an operation
    that finishes `operation_seconds` after the first check; returns when it was noticed and the checks made."""
    current = server_state(options={"pollIntervalSeconds": floor, "maxPollAttempts": 2500, "maxWaitSeconds": deadline})
    now, checks = 0.0, 0
    while True:
        clock.use(lambda: now)
        checks += 1
        current["image"] = state.poll_result(current, "image", now >= operation_seconds)
        if current["image"]["ready"]:
            return now, checks
        now += current["image"]["nextWaitSeconds"]


@pytest.fixture
def real_time_after():
    yield
    import time

    clock.use(time.time)


@pytest.mark.parametrize("operation_seconds", [1, 7, 29, 31, 95, 600, 616, 1365, 4400, 14399])
@pytest.mark.parametrize("floor", [1, 10, 30])
def test_a_finished_operation_is_noticed_within_5_percent_of_its_duration_or_the_floor(
        real_time_after, operation_seconds, floor):
    # GIVEN an operation of `operation_seconds`, polled with a shortest wait of `floor`
    # WHEN the poll loop runs until a check sees it done
    noticed, checks = checks_of(operation_seconds, floor)

    # THEN the delay between its end and the check that saw it is within 5% of its duration or the floor
    assert operation_seconds <= noticed <= operation_seconds + max(0.05 * operation_seconds, floor)
    # AND it took no more checks than a fixed interval of the floor would have
    assert checks <= operation_seconds / floor + 2


def test_waits_grow_with_the_time_waited_from_the_floor(at):
    # GIVEN a poll loop with a 30 s floor, first checked at 1000 s
    at(1000.0)
    current = server_state(options={"pollIntervalSeconds": 30, "maxWaitSeconds": 14400})
    current["image"] = state.poll_result(current, "image", False)
    waits = [current["image"]["nextWaitSeconds"]]

    # WHEN it is checked again 10 minutes and 2 hours in
    for seconds in (600, 7200):
        at(1000.0 + seconds)
        waits.append(state.poll_result(current, "image", False)["nextWaitSeconds"])

    # THEN the wait is the floor until 5% of the time waited passes it: 30 s, 30 s, then 360 s
    assert waits == [30, 30, 360]


def test_the_last_wait_ends_at_the_deadline(at):
    # GIVEN a wait 3550 s into a one-hour deadline, where 5% of the time waited would be 177 s
    at(1000.0)
    current = server_state(options={"pollIntervalSeconds": 30, "maxWaitSeconds": 3600},
                           image={"ready": False, "attempts": 3, "waitStartedAt": 1000.0 - 3550})

    # WHEN / THEN the next wait ends just past the deadline, where the check gives up, not three minutes later
    assert state.poll_result(current, "image", False)["nextWaitSeconds"] == 51


def test_the_default_poll_attempts_cover_the_default_deadline_at_any_floor(real_time_after):
    # GIVEN the request's defaults: maxPollAttempts and maxWaitSeconds
    defaults = Options()

    # WHEN a loop runs to the default deadline with the shortest floor the request allows, or the default one
    for floor in (1, defaults.poll_interval_seconds):
        _, checks = checks_of(defaults.max_wait_seconds, floor, deadline=defaults.max_wait_seconds)

        # THEN the checks it takes stay within the default attempts: the deadline, not the count, ends a wait
        assert checks < defaults.max_poll_attempts
        # AND they are at most a quarter of what a fixed interval of the floor would take (88 instead of 480)
        assert checks <= defaults.max_wait_seconds / floor / 4 or floor == 1


def test_a_step_that_waits_before_its_first_check_starts_the_wait(at):
    # GIVEN a copy started at 2000 s with a 30 s floor / WHEN its slot is written / THEN the wait starts then
    at(2000.0)
    current = server_state(options={"pollIntervalSeconds": 30})
    assert state.first_wait(current) == {"waitStartedAt": 2000.0, "nextWaitSeconds": 30}


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


TARGET_COPY_RUNNING = {"imageId": "ami-3", "accountId": "222222222222", "ready": False, "attempts": 0}
UP_TO_THE_LAUNCH = {"claim": CLAIMED, "cutover": CUTOVER_LAUNCHED, "image": IMAGE, "sharedImage": SHARED,
                    "share": SHARE, "targetImage": TARGET_COPY_RUNNING}


def test_restoring_from_the_shared_image_a_running_target_copy_is_not_the_failed_step():
    # GIVEN the default restore: the target's copy started (still running) and the launch failed
    current = server_state(**UP_TO_THE_LAUNCH)

    # WHEN / THEN the failed step is the launch, not the copy that is still under way
    assert state.failed_step(current) == "Launch Restored Instance"


def test_restoring_from_the_target_image_a_running_target_copy_is_the_failed_step():
    # GIVEN the classic restore, whose launch waits for the target's copy
    current = server_state(options={"restoreFrom": "targetImage"}, **UP_TO_THE_LAUNCH)

    # WHEN / THEN a failure with the copy still running is the copy's
    assert state.failed_step(current) == "Copy Image To Target"


def test_restoring_from_the_shared_image_the_target_copy_is_waited_for_after_the_agent_steps():
    # GIVEN a finalized server whose agent steps all finished, and whose target copy then failed
    current = server_state(**UP_TO_THE_LAUNCH, restored=RESTORED, finalize={"finalized": True},
                           managed={"ready": True}, agentInstall={"ready": True}, agentConfigure={"ready": True})

    # WHEN / THEN the failed step is the copy, after finalize, and the finished agent steps are not left to do
    assert state.failed_step(current) == "Copy Image To Target"
    assert state.finished_steps(current) == {"Wait For Managed Instance", "Install Agent", "Configure Agent"}


def test_without_the_agent_the_target_copy_follows_finalize():
    # GIVEN no agent install, and a target copy that failed after finalize
    current = server_state(options={"installAgent": False}, **UP_TO_THE_LAUNCH, restored=RESTORED,
                           finalize={"finalized": True})

    # WHEN / THEN the copy is the failed step, not an agent step that never ran
    assert state.failed_step(current) == "Copy Image To Target"
