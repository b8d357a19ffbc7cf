"""The MGN side of a cutover, against the sandbox's MGN simulator: start, watch the launch, finalize, revert."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from pipeline import cutover, ledger, state
from pipeline.errors import CutoverLaunchFailed, ServerNotReady, WaitTimedOut
from sandbox import mgn
from tests.unit.support import EXECUTION, SOURCE_SERVER_ID, migration_client, poll, server_state


@pytest.fixture
def source_server(world, target_network, claimed_server):
    """A source server replicating healthily, ready for cutover."""
    return world.mgn.add_source_server(SOURCE_SERVER_ID, launch=mgn.LaunchSettings(instance_type="m5.xlarge"))


@pytest.fixture
def branch(source_server, target_network) -> dict:
    return server_state(target_network.placement(), options={"maxPollAttempts": 5}, claim={"claimed": True})


def test_start_starts_one_cutover_job(branch, world):
    # GIVEN a server ready for cutover
    # WHEN the cutover is started
    result = cutover.start(branch)

    # THEN MGN runs a job for the server, tagged with the execution, and the ledger knows the job
    job = world.mgn.jobs[result["jobId"]]
    assert [participant.source_server_id for participant in job.participants] == [SOURCE_SERVER_ID]
    assert job.tags == {"mgn-cutover:execution": EXECUTION}
    assert world.mgn.servers[SOURCE_SERVER_ID].life_cycle == "CUTTING_OVER"
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["cutoverJob"] == result["jobId"]


def test_start_twice_returns_the_running_job(branch, world):
    # GIVEN the cutover was started once
    first = cutover.start(branch)

    # WHEN the step runs again
    second = cutover.start(branch)

    # THEN it picks up the same job instead of failing or starting another
    assert second == first
    assert list(world.mgn.jobs) == [first["jobId"]]


@pytest.mark.parametrize("life_cycle", ["READY_FOR_TEST", "TESTING", "CUTOVER", "DISCONNECTED", "NOT_READY"])
def test_start_from_another_lifecycle_state_is_refused(branch, world, life_cycle):
    # GIVEN a server that is not ready for cutover
    world.mgn.servers[SOURCE_SERVER_ID].life_cycle = life_cycle

    # WHEN / THEN the start is refused naming its state, and no job is started
    with pytest.raises(ServerNotReady, match=life_cycle):
        cutover.start(branch)
    assert world.mgn.jobs == {}


def test_start_of_a_server_mgn_does_not_know_is_refused(world, target_network, claimed_server):
    # GIVEN no such server in MGN / WHEN the cutover starts / THEN it is refused
    current = server_state(target_network.placement(), claim={"claimed": True})
    with pytest.raises(ServerNotReady, match="does not exist"):
        cutover.start(current)


def test_check_launch_waits_then_reports_the_cutover_instance(branch, world):
    # GIVEN a started cutover, whose launch takes MGN ten minutes
    world.mgn.launch_seconds = 600
    branch["cutover"] = cutover.start(branch)

    # WHEN the launch is checked at once, and again once the ten minutes have passed
    first = cutover.check_launch(branch)
    branch["cutover"] = first
    world.clock.sleep(600)
    second = cutover.check_launch(branch)

    # THEN the first check waits, the second names the cutover instance, which runs in EC2
    assert (first["ready"], first["attempts"], first["launchStatus"]) == (False, 1, "IN_PROGRESS")
    assert second["ready"] is True
    instance_id = second["cutoverInstanceId"]
    ec2 = migration_client("ec2")
    [instance] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    assert instance["State"]["Name"] == "running" and instance["InstanceType"] == "m5.xlarge"
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["cutoverInstance"] == instance_id


def test_check_launch_of_a_failed_launch_raises(branch, world):
    # GIVEN MGN fails to launch the server, after one check that finds it in progress
    world.mgn.launch_seconds = 600
    world.mgn.servers[SOURCE_SERVER_ID].launch_fails = True
    branch["cutover"] = cutover.start(branch)
    branch["cutover"] = cutover.check_launch(branch)
    world.clock.sleep(600)

    # WHEN / THEN the next check raises CutoverLaunchFailed with the launch status
    with pytest.raises(CutoverLaunchFailed, match="FAILED"):
        cutover.check_launch(branch)
    assert "cutoverInstance" not in ledger.read(SOURCE_SERVER_ID)["artifacts"]


def test_report_of_a_failed_launch_names_the_cutover_step(branch, world):
    # GIVEN the launch failed on the first check; the Catch keeps the slot Start Cutover wrote
    world.mgn.launch_seconds = 0
    world.mgn.servers[SOURCE_SERVER_ID].launch_fails = True
    branch["cutover"] = cutover.start(branch)
    with pytest.raises(CutoverLaunchFailed):
        cutover.check_launch(branch)

    # WHEN / THEN the report names the cutover, not the image step that never ran
    assert state.failed_step(branch) == "Start Cutover"


def test_check_launch_of_an_unknown_job_raises(branch):
    # GIVEN a job id MGN does not know / WHEN the launch is checked / THEN it fails
    branch["cutover"] = {"jobId": "mgnjob-00000000000000000"}
    with pytest.raises(CutoverLaunchFailed, match="does not exist"):
        cutover.check_launch(branch)


def test_check_launch_of_a_job_for_another_server_raises(branch, world):
    # GIVEN the launch job id points at a job of another server
    world.mgn.add_source_server("s-1a2b3c4d5e6f70002")
    other = world.mgn.start_console_cutover(["s-1a2b3c4d5e6f70002"])
    branch["cutover"] = {"jobId": other.job_id}

    # WHEN / THEN the check refuses to take that job's instance
    with pytest.raises(CutoverLaunchFailed, match=f"does not launch source server {SOURCE_SERVER_ID}"):
        cutover.check_launch(branch)


def test_check_launch_is_bounded(branch, world):
    # GIVEN a launch that takes longer than allowed / WHEN checked to the bound / THEN the wait ends
    world.mgn.launch_seconds = 3600
    branch["options"]["maxPollAttempts"] = 2
    branch["cutover"] = cutover.start(branch)
    branch["cutover"] = cutover.check_launch(branch)
    with pytest.raises(WaitTimedOut):
        cutover.check_launch(branch)


def test_a_cutover_launched_in_the_console_is_picked_up(branch, world):
    # GIVEN someone launched the cutover in the MGN console; the request names its job
    job = world.mgn.start_console_cutover([SOURCE_SERVER_ID])
    branch["cutover"] = {"jobId": job.job_id}

    # WHEN the launch is checked
    result = cutover.check_launch(branch)

    # THEN the instance MGN launched is the one the branch carries on with
    assert result["ready"] is True
    assert result["cutoverInstanceId"] == job.participants[0].instance_id


def test_finalize_reaches_cutover_and_is_idempotent(branch, world):
    # GIVEN the cutover instance launched
    branch["cutover"] = cutover.start(branch)
    poll(cutover.check_launch, branch, "cutover")

    # WHEN the cutover is finalized twice
    assert cutover.finalize(branch) == {"finalized": True}
    assert cutover.finalize(branch) == {"finalized": True}

    # THEN MGN has the server cut over, and the ledger marks the point of no return
    assert world.mgn.servers[SOURCE_SERVER_ID].life_cycle == "CUTOVER"
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["finalized"] == "true"


def test_finalize_while_the_launch_runs_is_refused_by_mgn(branch, world):
    # GIVEN the launch has not finished
    world.mgn.launch_seconds = 3600
    branch["cutover"] = cutover.start(branch)

    # WHEN / THEN MGN refuses, and the ledger does not claim the point of no return
    with pytest.raises(ClientError) as refused:
        cutover.finalize(branch)
    assert refused.value.response["Error"]["Code"] == "ConflictException"
    assert "finalized" not in ledger.read(SOURCE_SERVER_ID)["artifacts"]


def test_revert_takes_a_launched_server_back_to_ready(branch, world):
    # GIVEN a launched cutover / WHEN it is reverted / THEN the server is ready for cutover again
    branch["cutover"] = cutover.start(branch)
    poll(cutover.check_launch, branch, "cutover")
    assert cutover.revert(SOURCE_SERVER_ID) == "lifecycle CUTTING_OVER -> READY_FOR_CUTOVER"
    assert world.mgn.servers[SOURCE_SERVER_ID].life_cycle == "READY_FOR_CUTOVER"


@pytest.mark.parametrize("life_cycle", ["READY_FOR_CUTOVER", "CUTOVER"])
def test_revert_leaves_a_ready_or_finalized_server_alone(branch, world, life_cycle):
    # GIVEN a server ready or already cut over / WHEN reverted / THEN nothing changes
    world.mgn.servers[SOURCE_SERVER_ID].life_cycle = life_cycle
    assert cutover.revert(SOURCE_SERVER_ID) is None
    assert world.mgn.servers[SOURCE_SERVER_ID].life_cycle == life_cycle


def test_start_resumes_after_a_finalize_an_earlier_execution_did(branch, world):
    # GIVEN an earlier execution cut the server over; its ledger entries came back with this claim
    world.mgn.servers[SOURCE_SERVER_ID].life_cycle = "CUTOVER"
    earlier = {"finalized": "true", "restoredInstance": "i-0restored0000001", "cutoverJob": "mgnjob-1"}
    branch["claim"]["artifacts"] = earlier

    # WHEN the cutover is started again
    result = cutover.start(branch)

    # THEN no job is started: the branch resumes after the point of no return, with the server restored then
    assert result == {"jobId": "mgnjob-1", "alreadyCutOver": True, "restoredInstanceId": "i-0restored0000001"}
    assert world.mgn.jobs == {}


def test_start_of_a_cut_over_server_without_an_earlier_restore_is_refused(branch, world):
    # GIVEN MGN has the server cut over, but the ledger knows of no restore (it was cut over by hand, say)
    world.mgn.servers[SOURCE_SERVER_ID].life_cycle = "CUTOVER"
    branch["claim"]["artifacts"] = {}

    # WHEN / THEN the start is refused
    with pytest.raises(ServerNotReady, match="CUTOVER"):
        cutover.start(branch)
