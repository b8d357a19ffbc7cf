"""Every wait has an overall deadline: passing it fails the server with a clear error, and rolls back."""

from __future__ import annotations

from sandbox import faults
from sandbox.runner import Sandbox
from tests.faults.helpers import one_server_request, servers_of


def test_an_image_that_never_becomes_available_fails_at_the_wait_deadline_and_rolls_back():
    # GIVEN an image that stays pending far longer than the wait's deadline of one second (its snapshots are
    # written at 1 KiB/s), after a cutover launch that is done at once, with checks many enough that the
    # attempt bound would not stop the wait first
    request = one_server_request()
    request["options"].update({"maxWaitSeconds": 1, "maxPollAttempts": 2500})
    speed = {"mgnLaunchSeconds": 0, "conversionMiBps": 0, "snapshotMiBps": 0.001}
    with Sandbox(request, {"speed": speed}) as sandbox:
        before = sandbox.world.inventory()

        # WHEN it is rehearsed
        rehearsal = sandbox.rehearse().as_json()

    # THEN the server failed at the image step with WaitTimedOut naming the wait and its deadline ...
    (server,) = servers_of(rehearsal)
    assert (server["outcome"], server["failedStep"], server["error"]["type"]) == (
        "ROLLED_BACK", "Create Image", "WaitTimedOut")
    assert "wait for the image passed its deadline" in server["error"]["message"]
    assert "the deadline is 1 s" in server["error"]["message"]
    # ... and the rollback left every account as it was
    assert faults.differences(before, rehearsal["inventory"]) == {"duplicates": [], "leaks": [], "missing": []}
