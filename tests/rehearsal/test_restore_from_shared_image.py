"""Restoring straight from the shared image (the default), the classic restore from the target's own copy, and
copies that wait for a free slot when EC2 runs as many as it allows."""

from __future__ import annotations

import contextlib
import copy
import io

from sandbox import wave_benchmark
from sandbox.runner import Sandbox
from tests.rehearsal.helpers import MIGRATION_ACCOUNT, lifecycle_of, live_instances, load_event, random_request

TARGET = "222222222222"


def with_options(request: dict, **options) -> dict:
    changed = copy.deepcopy(request)
    changed.setdefault("options", {}).update(options)
    return changed


def target_images(rehearsal, account: str) -> list[dict]:
    return rehearsal.inventory["accounts"][account]["images"]


def assert_no_sharing_left(rehearsal) -> None:
    """Nothing of the migration account stays shared: no image to launch, no snapshot to copy, no grant."""
    migration = rehearsal.inventory["accounts"][MIGRATION_ACCOUNT]
    assert all(not image["launchPermissions"] for image in migration["images"])
    assert all(not snapshot["createVolumePermissions"] for snapshot in migration["snapshots"])
    assert migration["kmsGrants"] == []


def assert_copy_left_to_do(rehearsal, code: str) -> None:
    """One server cut over with the target copy left to do, failed with `code`: its restored instance runs and
    MGN says CUTOVER."""
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    [server] = rehearsal.output["servers"]
    assert server["outcome"] == "CUT_OVER_WITH_FOLLOW_UP"
    assert (server["failedStep"], server["error"]["code"]) == ("Copy Image To Target", code)
    assert server["leftToDo"] == ["Copy Image To Target"]
    assert [i["id"] for i in live_instances(rehearsal.inventory, TARGET)] == [server["restoredInstanceId"]]
    assert set(lifecycle_of(rehearsal.inventory).values()) == {"CUTOVER"}


def test_the_default_restore_launches_from_the_shared_image_and_keeps_the_targets_copy():
    # GIVEN the console wave: two servers into two target accounts, each with the target's own key
    request = load_event("console-wave.json")

    # WHEN it is rehearsed with the default restore
    steps: list[tuple[str, str]] = []
    with Sandbox(request, progress=lambda event: steps.append((event["server"], event["step"]))) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN both servers are cut over ...
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    assert {s["outcome"] for s in rehearsal.output["servers"]} == {"CUT_OVER"}
    assert set(lifecycle_of(rehearsal.inventory).values()) == {"CUTOVER"}
    for server in request["servers"]:
        account = server["target"]["accountId"]
        [instance] = [i for i in live_instances(rehearsal.inventory, account)
                      if i["privateIp"] == server["target"]["privateIpAddress"]]
        [kept] = target_images(rehearsal, account)
        # ... each restored instance launched from the image the migration account shared, not from the
        # target's copy, its volumes under the target account's own key ...
        assert instance["image"] != kept["id"]
        assert instance["image"] not in {image["id"] for image in target_images(rehearsal, account)}
        assert instance["volumeKeys"] and all(key.startswith(f"arn:aws:kms:us-east-1:{account}:key/")
                                              for key in instance["volumeKeys"])
        # ... and the target's own copy is there afterwards, complete and under the target's key
        assert kept["state"] == "available" and "target-copy" in kept["name"]
        assert kept["keys"] and all(key.startswith(f"arn:aws:kms:us-east-1:{account}:key/") for key in kept["keys"])
        # ... the target's copy waited for only after finalize and the agent steps, before the sharing is undone
        order = [step for who, step in steps if who == server["sourceServerId"]]
        assert order.index("Finalize Cutover") < order.index("Check Target Copy") < order.index("Clean Up")
        assert "Check Target Image" not in order
        assert order.index("Copy Image To Target") < order.index("Launch Restored Instance")
    assert_no_sharing_left(rehearsal)
    assert rehearsal.inventory["accounts"][MIGRATION_ACCOUNT]["images"] == []


def test_the_classic_restore_launches_from_the_targets_copy():
    # GIVEN the console wave asking for the classic restore
    request = with_options(load_event("console-wave.json"), restoreFrom="targetImage")

    # WHEN it is rehearsed
    steps: list[tuple[str, str]] = []
    with Sandbox(request, progress=lambda event: steps.append((event["server"], event["step"]))) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN every restored instance runs from the target's own copy, waited for before the launch
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    for server in request["servers"]:
        account = server["target"]["accountId"]
        [instance] = live_instances(rehearsal.inventory, account)
        assert instance["image"] in {image["id"] for image in target_images(rehearsal, account)}
        order = [step for who, step in steps if who == server["sourceServerId"]]
        checks = [index for index, step in enumerate(order) if step == "Check Target Image"]
        assert checks and max(checks) < order.index("Launch Restored Instance")
        assert "Check Target Copy" not in order
    assert_no_sharing_left(rehearsal)


def test_a_failure_before_finalize_with_the_target_copy_in_flight_leaves_nothing():
    # GIVEN one server into a target account without the instance profile: the launch from the shared image is
    # refused while the target's copy, started just before, is still running
    request = load_event("console-wave.json")
    request = {**request, "servers": request["servers"][:1]}
    world = {"targetAccounts": {TARGET: {"instanceProfiles": False}}}

    # WHEN it is rehearsed
    with Sandbox(request, world) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN the server is rolled back at the launch, and the copy in flight is gone with everything else
    [server] = rehearsal.cause["servers"]
    assert (server["outcome"], server["failedStep"]) == ("ROLLED_BACK", "Launch Restored Instance")
    target = rehearsal.inventory["accounts"][TARGET]
    assert target["images"] == [] and target["snapshots"] == []
    assert live_instances(rehearsal.inventory, TARGET) == []
    migration = rehearsal.inventory["accounts"][MIGRATION_ACCOUNT]
    assert migration["images"] == [] and migration["kmsGrants"] == []
    assert all(not snapshot["createVolumePermissions"] for snapshot in migration["snapshots"])
    assert set(lifecycle_of(rehearsal.inventory).values()) == {"READY_FOR_CUTOVER"}


def test_a_wave_larger_than_the_copy_limit_waits_for_slots_and_cuts_over():
    # GIVEN five servers at once (over two target accounts) where EC2 runs only two copies per account at a time
    request = with_options(random_request(21, 5), maxConcurrency=5)
    world = {"limits": {"concurrentImageCopies": 2}}

    # WHEN the wave is rehearsed
    waited: list[tuple[str, str]] = []

    def watch(event: dict) -> None:
        if isinstance(event.get("result"), dict) and event["result"].get("waitingForSlot"):
            waited.append((event["server"], event["step"]))

    with Sandbox(request, world, progress=watch) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN copies past the limit waited for a slot instead of failing, and every server is cut over
    assert {step for _, step in waited} >= {"Copy Image For Sharing"}
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    assert {s["outcome"] for s in rehearsal.output["servers"]} == {"CUT_OVER"}
    assert set(lifecycle_of(rehearsal.inventory).values()) == {"CUTOVER"}
    assert_no_sharing_left(rehearsal)


def test_a_target_copy_that_fails_after_finalize_is_a_follow_up_and_the_sharing_is_undone():
    # GIVEN one server whose target copy cannot be checked once the cutover is finalized (access denied)
    request = load_event("console-wave.json")
    request = {**request, "servers": request["servers"][:1]}

    # WHEN it is rehearsed
    with Sandbox(request, faults=["Check Target Copy/ec2:DescribeImages:denied"]) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN the cutover stands: the restored instance runs, MGN says CUTOVER, and the copy is the one thing left to do
    assert_copy_left_to_do(rehearsal, "UnauthorizedOperation")
    # AND the sharing is undone all the same
    assert_no_sharing_left(rehearsal)


def test_a_target_copy_without_a_free_slot_does_not_hold_the_launch_back():
    # GIVEN three servers replicated under the sharing key into one target account, where EC2 runs one copy at
    # a time: restored from the shared image, only the target's own copies need a slot
    request, world = wave_benchmark.generated_wave(7, "direct")
    account = wave_benchmark.TARGET_ACCOUNTS[0]
    request["servers"] = [s for s in request["servers"] if s["target"]["accountId"] == account]
    request["options"]["maxConcurrency"] = 3
    world["limits"] = {"concurrentImageCopies": 1}

    # WHEN the wave is rehearsed
    answers: list[tuple[str, str, bool]] = []

    def watch(event: dict) -> None:
        if event["step"] in ("Copy Image To Target", "Start Target Copy") and isinstance(event.get("result"), dict):
            answers.append((event["server"], event["step"], bool(event["result"].get("waitingForSlot"))))

    with contextlib.redirect_stdout(io.StringIO()), Sandbox(request, world, progress=watch) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN two servers found no slot before their launch, and started their copies after the agent steps
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    waited = {server for server, step, waiting in answers if step == "Copy Image To Target" and waiting}
    assert len(waited) == 2
    assert {server for server, step, waiting in answers if step == "Start Target Copy" and not waiting} == waited
    # AND their downtime is the one that found a slot's: no copy slot was waited for before finalize
    downtimes = [times["cutoverSeconds"] for times in rehearsal.timing["servers"].values()]
    assert max(downtimes) - min(downtimes) < 0.01 * min(downtimes)
    # AND every server is cut over with its own image in the target account, and nothing stays shared
    assert {s["outcome"] for s in rehearsal.output["servers"]} == {"CUT_OVER"}
    assert len([i for i in target_images(rehearsal, account) if i["state"] == "available"]) == 3
    assert_no_sharing_left(rehearsal)


def test_a_target_copy_that_never_finds_a_slot_is_a_follow_up_and_the_sharing_is_undone():
    # GIVEN one server replicated under the sharing key, into a target account where EC2 starts no copy at all
    request = load_event("console-wave.json")
    request = with_options({**request, "servers": request["servers"][:1]}, pollIntervalSeconds=300, maxPollAttempts=5)
    world = {"defaultServer": {"replicationKey": "sharing-key"}, "limits": {"concurrentImageCopies": 0}}

    # WHEN it is rehearsed
    with Sandbox(request, world) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN the restored instance was launched and the cutover finalized without the copy, which is left to do
    assert_copy_left_to_do(rehearsal, "WaitTimedOut")
    assert target_images(rehearsal, TARGET) == []
    # AND nothing stays shared
    assert_no_sharing_left(rehearsal)
