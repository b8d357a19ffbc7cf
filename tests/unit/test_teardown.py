"""Removing what a cutover created: clean up after success, roll back before finalize."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from pipeline import aws, cutover, images, ledger, restore, teardown, wave
from pipeline.errors import CutoverJobActive, TransientAwsError
from tests.unit.support import (
    EXECUTION,
    OTHER_EXECUTION,
    SOURCE_SERVER_ID,
    WAVE,
    account_client,
    grants_on,
    launch_permissions,
    migration_client,
    poll,
    refuse_calls,
    server_state,
    set_image_state,
    snapshot_ids_of,
    volume_permissions,
)


def image_exists(ec2, image_id: str) -> bool:
    return bool(ec2.describe_images(Owners=["self"], Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"])


def snapshots_left(ec2) -> list[str]:
    return [snapshot["SnapshotId"] for snapshot in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]]


def instance_state(ec2, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def lifecycle(world) -> str:
    return world.mgn.servers[SOURCE_SERVER_ID].life_cycle


def protect_from_termination(ec2, instance_id: str) -> None:
    ec2.modify_instance_attribute(InstanceId=instance_id, DisableApiTermination={"Value": True})


# --- clean up ---------------------------------------------------------------------------------------------------------


def test_clean_up_removes_the_intermediates_and_keeps_the_restored_server(finalized, sharing_key, ec2, target_ec2):
    # GIVEN a server cut over: the cutover image, its sharing copy, the grant and the cutover instance remain
    cutover_image, sharing_copy = finalized["image"]["imageId"], finalized["sharedImage"]["imageId"]
    cutover_instance = finalized["cutover"]["cutoverInstanceId"]

    # WHEN the intermediates are cleaned up
    result = teardown.clean_up(finalized)

    # THEN the migration account holds no image, snapshot or grant of the cutover any more; the instance is terminated
    assert result["failures"] == [] and result["ready"] is True
    assert not image_exists(ec2, cutover_image) and not image_exists(ec2, sharing_copy)
    assert snapshots_left(ec2) == []
    assert grants_on(sharing_key) == []
    assert instance_state(ec2, cutover_instance) == "terminated"
    # AND the restored instance and the target's own image are untouched
    assert instance_state(target_ec2, finalized["restored"]["instanceId"]) == "running"
    assert image_exists(target_ec2, finalized["targetImage"]["imageId"])
    # AND the ledger forgets what is gone, and keeps what stays
    artifacts = ledger.read(SOURCE_SERVER_ID)["artifacts"]
    assert {"image", "sharedImage", "grant", "sharedWith", "cutoverInstance"}.isdisjoint(artifacts)
    assert artifacts["restoredInstance"] == finalized["restored"]["instanceId"]
    assert artifacts["finalized"] == "true"


def test_clean_up_without_cleanup_takes_back_the_sharing_only(finalized, sharing_key, ec2):
    # GIVEN a request that keeps the intermediates for inspection
    finalized["options"]["cleanup"] = False
    sharing_copy = finalized["sharedImage"]["imageId"]

    # WHEN it is cleaned up
    result = teardown.clean_up(finalized)

    # THEN the target account lost every permission and the grant; the images and the cutover instance stay
    assert result["failures"] == []
    assert launch_permissions(ec2, sharing_copy) == []
    assert all(volume_permissions(ec2, snapshot) == [] for snapshot in snapshot_ids_of(ec2, sharing_copy))
    assert grants_on(sharing_key) == []
    assert image_exists(ec2, sharing_copy) and image_exists(ec2, finalized["image"]["imageId"])
    assert instance_state(ec2, finalized["cutover"]["cutoverInstanceId"]) == "running"
    artifacts = ledger.read(SOURCE_SERVER_ID)["artifacts"]
    assert {"grant", "sharedWith"}.isdisjoint(artifacts)
    assert artifacts["sharedImage"] == sharing_copy


def test_clean_up_keeps_going_when_one_removal_fails(finalized, sharing_key, ec2):
    # GIVEN someone turned on termination protection for the cutover instance
    cutover_instance = finalized["cutover"]["cutoverInstanceId"]
    protect_from_termination(ec2, cutover_instance)

    # WHEN it is cleaned up
    result = teardown.clean_up(finalized)

    # THEN that one removal is reported, every other one was done, and the ledger still lists the instance
    [failure] = result["failures"]
    assert failure["artifact"] == "cutover instance"
    assert "OperationNotPermitted" in failure["error"]
    assert result["ready"] is False
    assert snapshots_left(ec2) == [] and grants_on(sharing_key) == []
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["cutoverInstance"] == cutover_instance


def test_clean_up_hit_by_throttling_is_retried_for_what_is_left(finalized, sharing_key, ec2):
    # GIVEN EC2 throttles the termination of the cutover instance
    cutover_instance = finalized["cutover"]["cutoverInstanceId"]
    lift = refuse_calls(aws.client("ec2"), "TerminateInstances", "RequestLimitExceeded", status=503)

    # WHEN it is cleaned up
    with pytest.raises(TransientAwsError, match="cutover instance"):
        teardown.clean_up(finalized)

    # THEN every other removal was done and forgotten; the ledger keeps only what the retry must do
    assert snapshots_left(ec2) == [] and grants_on(sharing_key) == []
    assert {"image", "sharedImage", "sharedWith"}.isdisjoint(ledger.read(SOURCE_SERVER_ID)["artifacts"])
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["cutoverInstance"] == cutover_instance

    # AND WHEN the state machine retries the step once EC2 answers again
    lift()
    result = teardown.clean_up(finalized)

    # THEN only the cutover instance was left to remove
    assert result == {"removed": [f"cutover instance {cutover_instance}"], "failures": [], "ready": True}
    assert instance_state(ec2, cutover_instance) == "terminated"


def test_a_failure_that_retrying_cannot_fix_is_reported_not_raised(finalized, ec2):
    # GIVEN EC2 denies the termination (a policy change, say)
    refuse_calls(aws.client("ec2"), "TerminateInstances", "UnauthorizedOperation", status=403)

    # WHEN / THEN clean up finishes and reports it, without the internal transient flag
    result = teardown.clean_up(finalized)
    assert [failure["artifact"] for failure in result["failures"]] == ["cutover instance"]
    assert set(result["failures"][0]) == {"artifact", "error"}


def test_clean_up_twice_has_nothing_left_to_do(finalized):
    # GIVEN a cleaned-up server / WHEN cleaned up again / THEN nothing is left to do
    teardown.clean_up(finalized)
    again = teardown.clean_up(finalized)
    assert again == {"removed": [], "failures": [], "ready": True}


def test_clean_up_of_a_cutover_instance_ec2_no_longer_lists_succeeds(finalized, ec2):
    # GIVEN the ledger names a cutover instance EC2 no longer knows (terminated more than an hour ago, say)
    ledger.record(SOURCE_SERVER_ID, EXECUTION, "cutoverInstance", "i-0123456789abcdef0")

    # WHEN it is cleaned up (a redrive of the step, say)
    result = teardown.clean_up(finalized)

    # THEN there is nothing to remove, which is not a failure
    assert result["failures"] == []


def test_clean_up_without_cleanup_unshares_an_image_that_needed_no_copy(start_branch, sharing_key, ec2):
    # GIVEN MGN replicated under the sharing key, so the cutover image itself was shared
    current = start_branch(sharing_key)
    current["image"] = images.create(current)
    poll(images.check, current, "image", "image")
    current["sharedImage"] = images.copy_for_sharing(current)
    current["share"] = images.share(current)
    current["options"]["cleanup"] = False

    # WHEN the intermediates are kept but the sharing is taken back
    teardown.clean_up(current)

    # THEN the target account may no longer launch the image
    assert launch_permissions(ec2, current["image"]["imageId"]) == []


# --- roll back --------------------------------------------------------------------------------------------------------


def test_roll_back_removes_everything_in_both_accounts(restored, world, sharing_key, ec2, target_ec2):
    # GIVEN the restored instance runs, but a failure came before finalize
    cutover_instance = restored["cutover"]["cutoverInstanceId"]
    restored_instance = restored["restored"]["instanceId"]

    # WHEN the branch rolls back
    result = teardown.roll_back(restored)

    # THEN nothing of the cutover is left in the target account ...
    assert result["complete"] is True and result["failures"] == []
    assert instance_state(target_ec2, restored_instance) == "terminated"
    assert not image_exists(target_ec2, restored["targetImage"]["imageId"])
    assert snapshots_left(target_ec2) == []
    # ... nor in the migration account, and MGN has the server ready for cutover again
    assert snapshots_left(ec2) == [] and ec2.describe_images(Owners=["self"])["Images"] == []
    assert grants_on(sharing_key) == []
    assert instance_state(ec2, cutover_instance) == "terminated"
    assert lifecycle(world) == "READY_FOR_CUTOVER"
    assert "lifecycle CUTTING_OVER -> READY_FOR_CUTOVER" in result["removed"]
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"] == {}


def test_roll_back_with_the_target_copy_still_in_flight_leaves_nothing(shared, world, sharing_key, ec2, target_ec2):
    # GIVEN the default restore: the target's copy started and still pending, the restored instance launched from
    # the shared image, and a failure before finalize
    shared["targetImage"] = images.copy_to_target(shared)
    set_image_state(shared["server"]["target"]["accountId"], shared["targetImage"]["imageId"], "pending")
    shared["restored"] = restore.launch(shared)

    # WHEN the branch rolls back
    result = teardown.roll_back(shared)

    # THEN the pending copy is stopped (deregistered) with its snapshots, the restored instance terminated, and
    # nothing stays shared or granted
    assert result["complete"] is True and result["failures"] == []
    assert f"image {shared['targetImage']['imageId']}" in result["removed"]
    assert target_ec2.describe_images(Owners=["self"])["Images"] == [] and snapshots_left(target_ec2) == []
    assert instance_state(target_ec2, shared["restored"]["instanceId"]) == "terminated"
    assert ec2.describe_images(Owners=["self"])["Images"] == [] and snapshots_left(ec2) == []
    assert grants_on(sharing_key) == []
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"] == {}


def test_roll_back_right_after_the_image_was_created(created, world, ec2):
    # GIVEN only the cutover image exists when the copy step fails
    # WHEN the branch rolls back
    result = teardown.roll_back(created)

    # THEN the image, its snapshots and the cutover instance are gone, and the server is ready again
    assert result["complete"] is True
    assert ec2.describe_images(Owners=["self"])["Images"] == [] and snapshots_left(ec2) == []
    assert instance_state(ec2, created["cutover"]["cutoverInstanceId"]) == "terminated"
    assert lifecycle(world) == "READY_FOR_CUTOVER"


def test_roll_back_twice_has_nothing_left_to_do(restored, world):
    # GIVEN a rolled-back server / WHEN rolled back again / THEN nothing is left to do
    teardown.roll_back(restored)
    again = teardown.roll_back(restored)
    assert again == {"removed": [], "failures": [], "complete": True}
    assert lifecycle(world) == "READY_FOR_CUTOVER"


def test_roll_back_keeps_going_and_reports_what_it_could_not_remove(restored, world, ec2, target_ec2):
    # GIVEN termination protection on the cutover instance
    cutover_instance = restored["cutover"]["cutoverInstanceId"]
    protect_from_termination(ec2, cutover_instance)

    # WHEN the branch rolls back
    result = teardown.roll_back(restored)

    # THEN it is incomplete, names the one removal that failed, and did every other one
    assert result["complete"] is False
    assert [failure["artifact"] for failure in result["failures"]] == ["cutover instance"]
    assert instance_state(target_ec2, restored["restored"]["instanceId"]) == "terminated"
    assert snapshots_left(ec2) == []
    assert lifecycle(world) == "READY_FOR_CUTOVER"
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"] == {"cutoverInstance": cutover_instance}
    # AND the report says so
    report = wave.server_report(restored | {"error": {"Error": "ImageFailed", "Cause": "x"}, "rollback": result})
    assert report["outcome"] == "ROLLBACK_INCOMPLETE"


def test_roll_back_while_mgn_still_launches_reports_the_lifecycle(world, target_network, claimed_server):
    # GIVEN the wait for the cutover launch ran out while MGN's job still runs
    world.mgn.launch_seconds = 3600
    world.mgn.add_source_server(SOURCE_SERVER_ID)
    current = server_state(target_network.placement(), claim={"claimed": True, "artifacts": {}})
    current["cutover"] = cutover.start(current)
    current["cutover"] = cutover.check_launch(current)

    # WHEN the branch rolls back
    with pytest.raises(CutoverJobActive) as caught:
        teardown.roll_back(current)

    # THEN MGN would refuse to move the server while its job runs, so the rollback waits (the Roll Back
    # state retries CutoverJobActive) and has changed nothing yet
    assert current["cutover"]["jobId"] in str(caught.value)
    assert lifecycle(world) == "CUTTING_OVER"
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"] == {"cutoverJob": current["cutover"]["jobId"]}


def test_roll_back_after_the_launch_job_ended_terminates_the_instance_it_launched(
    world, target_network, claimed_server
):
    # GIVEN the wait for the cutover launch failed before the pipeline saw the instance, and the job then ended
    world.mgn.launch_seconds = 600
    world.mgn.add_source_server(SOURCE_SERVER_ID)
    current = server_state(target_network.placement(), claim={"claimed": True, "artifacts": {}})
    current["cutover"] = cutover.start(current)
    with pytest.raises(CutoverJobActive):
        teardown.roll_back(current)

    # WHEN the Roll Back state retries, once the job has ended
    world.clock.sleep(600)
    result = teardown.roll_back(current)

    # THEN the instance MGN launched is terminated and the server is ready for cutover again
    assert result["complete"] is True, result
    assert any(line.startswith("cutover instance") for line in result["removed"])
    assert lifecycle(world) == "READY_FOR_CUTOVER"


def test_roll_back_after_finalize_leaves_mgn_alone(finalized, world):
    # GIVEN the ledger says finalize happened (a failure right after it, say)
    # WHEN the rollback runs
    result = teardown.roll_back(finalized)

    # THEN MGN keeps the server cut over: finalize is the point of no return
    assert lifecycle(world) == "CUTOVER"
    assert not any(line.startswith("lifecycle") for line in result["removed"])


def test_rollback_after_mgn_finalized_but_the_ledger_missed_it_keeps_the_restored_server(restored, world, target_ec2):
    # GIVEN MGN finalized the cutover, but the ledger write after it failed (the table denied it), so the
    # Finalize Cutover step failed and its Catch leads to Roll Back
    lift = refuse_calls(aws.client("dynamodb"), "UpdateItem", "AccessDeniedException", status=400)
    with pytest.raises(ClientError):
        cutover.finalize(restored)
    lift()
    assert lifecycle(world) == "CUTOVER"

    # WHEN the branch rolls back
    teardown.roll_back(restored)

    # THEN the restored instance, now the only running copy of the server, is left alone
    assert instance_state(target_ec2, restored["restored"]["instanceId"]) == "running"


def test_rollback_of_a_second_request_leaves_the_earlier_cutover_running(finalized, world, target_ec2):
    # GIVEN the server was cut over, cleaned up and released by an earlier execution
    teardown.clean_up(finalized)
    wave.release(finalized | {"cleanup": {"failures": [], "ready": True}})
    production = finalized["restored"]["instanceId"]

    # WHEN the same wave is started again by mistake: the claim succeeds, Start Cutover fails, the branch rolls back
    again = finalized | {"execution": OTHER_EXECUTION}
    ledger.claim(SOURCE_SERVER_ID, OTHER_EXECUTION, WAVE)
    teardown.roll_back({key: again[key] for key in ("execution", "wave", "options", "server")})

    # THEN the server restored by the first execution still runs in the target account
    assert instance_state(target_ec2, production) == "running"
