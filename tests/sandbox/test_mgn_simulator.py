"""The MGN simulator answers boto3's MGN client the way MGN does: jobs, lifecycle states, cutover instances, errors."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.handlers import BUILTIN_HANDLERS
from sandbox_helpers import MIGRATION, OTHER_TARGET, TARGET, pipeline_client, poll

from sandbox import aws_rules, mgn
from sandbox.world import World

SERVER = "s-0123456789abcdef0"
OTHER_SERVER = "s-0123456789abcdef1"


@pytest.fixture
def cutover(aws):
    """Build a world with source servers and TARGET; returns the migration account's MGN client, made after it."""
    worlds = []

    def build(spec: dict | None = None, servers: tuple[str, ...] = (SERVER,)):
        world = World(spec)
        worlds.append(world)
        for server in servers:
            world.add_source_server(server)
        world.add_target_account(TARGET)
        # Made after the world: a client copies its session's handlers when it is created.
        return boto3.client("mgn")

    yield build
    for world in worlds:
        world.close()


def job_of(client, job_id: str) -> dict:
    return client.describe_jobs(filters={"jobIDs": [job_id]})["items"][0]


def server_of(client, server_id: str = SERVER) -> dict:
    return client.describe_source_servers(filters={"sourceServerIDs": [server_id]})["items"][0]


def launched(client, job_id: str) -> dict:
    job, _ = poll(lambda: job_of(client, job_id), lambda job: job["status"] == "COMPLETED")
    return job


def error_of(raised: pytest.ExceptionInfo) -> tuple[str, int]:
    response = raised.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# --- StartCutover and the job ----------------------------------------------------------------------------------


def test_start_cutover_creates_a_pending_job_and_moves_the_server_to_cutting_over(cutover):
    # GIVEN a source server ready for cutover
    client = cutover()
    # WHEN the cutover starts
    job = client.start_cutover(sourceServerIDs=[SERVER], tags={"wave": "w1"})["job"]

    # THEN the job is a pending launch job with the server pending in it, and nothing is launched yet
    assert job["jobID"].startswith("mgnjob-") and len(job["jobID"]) == 24
    assert (job["type"], job["initiatedBy"], job["status"]) == ("LAUNCH", "START_CUTOVER", "PENDING")
    assert job["participatingServers"] == [{"sourceServerID": SERVER, "launchStatus": "PENDING"}]
    assert job["tags"] == {"wave": "w1"}
    server = server_of(client)
    assert server["lifeCycle"]["state"] == "CUTTING_OVER"
    assert server["lifeCycle"]["lastCutover"]["initiated"]["jobID"] == job["jobID"]
    assert "launchedInstance" not in server
    assert boto3.client("ec2").describe_instances()["Reservations"] == []


@pytest.mark.parametrize("launch_seconds, conversion_mib_per_second, calls_expected", [
    (0, 0, 1), (600, 0, 11), (600, 512, 12), (600, 64, 14)])
def test_job_reports_started_for_its_launch_time_then_completed_with_the_instance(
        cutover, launch_seconds, conversion_mib_per_second, calls_expected):
    # GIVEN a world whose launch jobs take a fixed time plus the server's 8 GiB converted at a rate
    client = cutover({"speed": {"mgnLaunchSeconds": launch_seconds, "conversionMiBps": conversion_mib_per_second}})
    job_id = client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"]

    # WHEN the job is polled every minute until it completes
    job, calls = poll(lambda: job_of(client, job_id), lambda job: job["status"] == "COMPLETED", attempts=20,
                      every=60)

    # THEN it was STARTED / IN_PROGRESS until its time had passed (600 s, 616 s, 728 s), then LAUNCHED an instance
    assert calls == calls_expected
    participant = job["participatingServers"][0]
    assert participant["launchStatus"] == "LAUNCHED"
    assert participant["launchedEc2InstanceID"].startswith("i-")
    assert participant["postLaunchActionsStatus"]["ssmAgentDiscoveryDatetime"]
    assert job["endDateTime"] >= job["creationDateTime"]


def test_a_started_job_shows_its_server_in_progress(cutover):
    # GIVEN a cutover started in a world whose jobs take time
    client = cutover({"speed": {"mgnLaunchSeconds": 600}})
    job_id = client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"]

    # WHEN the job is described once
    job = job_of(client, job_id)

    # THEN it is started, the server's launch in progress, no instance named yet
    assert job["status"] == "STARTED"
    assert job["participatingServers"] == [{"sourceServerID": SERVER, "launchStatus": "IN_PROGRESS"}]
    assert "endDateTime" not in job


def test_cutover_instance_has_a_volume_per_disk_encrypted_with_the_aws_managed_ebs_key(cutover):
    # GIVEN a server with two replicated disks and the default replication key
    client = cutover({"servers": {SERVER: {"diskSizesGiB": [8, 100], "tags": {"App": "billing"}}}})
    job = launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])
    instance_id = job["participatingServers"][0]["launchedEc2InstanceID"]

    # WHEN the cutover instance is looked at in the migration account
    ec2 = boto3.client("ec2")
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"]

    # THEN it runs, tagged like MGN tags it, with one encrypted volume per disk under aws/ebs
    assert instance["State"]["Name"] == "running"
    tags = {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
    assert tags[mgn.SOURCE_SERVER_TAG] == SERVER and tags["App"] == "billing"
    assert sorted(volume["Size"] for volume in volumes) == [8, 100]
    key_ids = {volume["KmsKeyId"] for volume in volumes}
    assert all(volume["Encrypted"] for volume in volumes) and len(key_ids) == 1
    key = boto3.client("kms").describe_key(KeyId=key_ids.pop())["KeyMetadata"]
    assert key["KeyManager"] == "AWS"
    assert server_of(client)["launchedInstance"] == {"ec2InstanceID": instance_id, "jobID": job["jobID"],
                                                     "firstBoot": "SUCCEEDED"}


def test_cutover_instance_volumes_use_the_customer_managed_replication_key(cutover):
    # GIVEN a server that replicates under a customer managed key
    client = cutover({"servers": {SERVER: {"replicationKey": "alias/mgn-replication"}}})
    key_arn = boto3.client("kms").describe_key(KeyId="alias/mgn-replication")["KeyMetadata"]["Arn"]

    # WHEN its cutover instance is launched
    job = launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])
    instance_id = job["participatingServers"][0]["launchedEc2InstanceID"]

    # THEN its volume is encrypted under that key's ARN
    volumes = boto3.client("ec2").describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}]
    )["Volumes"]
    assert [volume["KmsKeyId"] for volume in volumes] == [key_arn]


def test_cutover_instance_launched_stopped_when_the_launch_disposition_says_so(cutover):
    # GIVEN a server whose launch configuration launches the cutover instance stopped
    client = cutover({"servers": {SERVER: {"launchDisposition": "STOPPED"}}})
    # WHEN the cutover launches
    job = launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])

    # THEN the instance exists, stopped, and the launch configuration says why
    instance_id = job["participatingServers"][0]["launchedEc2InstanceID"]
    state = boto3.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] == "stopped"
    assert client.get_launch_configuration(sourceServerID=SERVER)["launchDisposition"] == "STOPPED"


def test_job_log_tells_the_launch_steps_in_order(cutover):
    # GIVEN a completed cutover job
    client = cutover()
    job_id = launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])["jobID"]

    # WHEN its log is read
    events = [item["event"] for item in client.describe_job_log_items(jobID=job_id)["items"]]

    # THEN it runs from job start through snapshot, conversion and launch to job end
    assert events == ["JOB_START", "SNAPSHOT_START", "SNAPSHOT_END", "CONVERSION_START", "CONVERSION_END",
                      "LAUNCH_START", "JOB_END"]
    assert client.describe_job_log_items(jobID="mgnjob-0000000000000000x")["items"] == []


def test_describe_jobs_filters_by_job_id(cutover):
    # GIVEN two jobs, one per server
    client = cutover(servers=(SERVER, OTHER_SERVER))
    first = client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"]
    second = client.start_cutover(sourceServerIDs=[OTHER_SERVER])["job"]["jobID"]

    # WHEN jobs are described by id, by an unknown id, and unfiltered
    only_first = client.describe_jobs(filters={"jobIDs": [first]})["items"]
    unknown = client.describe_jobs(filters={"jobIDs": ["mgnjob-0000000000000000x"]})["items"]
    everything = client.describe_jobs(filters={})["items"]

    # THEN each answer holds exactly the jobs asked for
    assert [job["jobID"] for job in only_first] == [first]
    assert unknown == []
    assert sorted(job["jobID"] for job in everything) == sorted([first, second])


# --- refusals of StartCutover ----------------------------------------------------------------------------------


def test_second_start_cutover_while_the_job_runs_is_a_conflict(cutover):
    # GIVEN a cutover job that has not finished
    client = cutover()
    job_id = client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"]

    # WHEN the cutover is started again
    with pytest.raises(client.exceptions.ConflictException) as raised:
        client.start_cutover(sourceServerIDs=[SERVER])

    # THEN MGN answers 409 naming the server and the running job, and no second job exists
    assert error_of(raised) == ("ConflictException", 409)
    assert raised.value.response["resourceId"] == SERVER
    assert job_id in raised.value.response["Error"]["Message"]
    assert len(client.describe_jobs(filters={})["items"]) == 1


@pytest.mark.parametrize("state", ["NOT_READY", "READY_FOR_TEST", "CUTOVER", "DISCONNECTED"])
def test_start_cutover_outside_ready_for_cutover_is_a_conflict(cutover, state):
    # GIVEN a server in another lifecycle state
    client = cutover({"servers": {SERVER: {"lifeCycle": state}}})
    # WHEN a cutover is started
    with pytest.raises(client.exceptions.ConflictException) as raised:
        client.start_cutover(sourceServerIDs=[SERVER])

    # THEN it is refused with the state named, and the server stays where it was
    assert error_of(raised) == ("ConflictException", 409)
    assert state in raised.value.response["Error"]["Message"]
    assert server_of(client)["lifeCycle"]["state"] == state


def test_start_cutover_of_an_unknown_server_is_a_validation_error(cutover):
    # GIVEN a world that does not hold OTHER_SERVER
    client = cutover()
    # WHEN a cutover names it
    with pytest.raises(client.exceptions.ValidationException) as raised:
        client.start_cutover(sourceServerIDs=[OTHER_SERVER])

    # THEN it is refused and nothing starts
    assert error_of(raised) == ("ValidationException", 400)
    assert client.describe_jobs(filters={})["items"] == []


# --- failing launches ------------------------------------------------------------------------------------------


def test_failed_launch_completes_the_job_failed_and_puts_the_server_back(cutover):
    # GIVEN a server the world makes fail to launch
    client = cutover({"servers": {SERVER: {"launchFails": True}}})
    # WHEN its cutover job runs to the end
    job = launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])

    # THEN the job completed with the launch failed, no instance, the server ready for cutover again
    assert job["participatingServers"] == [{"sourceServerID": SERVER, "launchStatus": "FAILED"}]
    server = server_of(client)
    assert server["lifeCycle"]["state"] == "READY_FOR_CUTOVER" and "launchedInstance" not in server
    assert boto3.client("ec2").describe_instances()["Reservations"] == []
    events = [item["event"] for item in client.describe_job_log_items(jobID=job["jobID"])["items"]]
    assert "LAUNCH_FAILED" in events


def test_one_failing_server_does_not_stop_the_others_in_its_job(cutover):
    # GIVEN two servers in one job, one made to fail
    client = cutover({"servers": {OTHER_SERVER: {"launchFails": True}}}, servers=(SERVER, OTHER_SERVER))
    # WHEN the job completes
    job = launched(client, client.start_cutover(sourceServerIDs=[SERVER, OTHER_SERVER])["job"]["jobID"])

    # THEN each server has its own outcome
    outcome = {p["sourceServerID"]: p["launchStatus"] for p in job["participatingServers"]}
    assert outcome == {SERVER: "LAUNCHED", OTHER_SERVER: "FAILED"}
    assert server_of(client, SERVER)["lifeCycle"]["state"] == "CUTTING_OVER"
    assert server_of(client, OTHER_SERVER)["lifeCycle"]["state"] == "READY_FOR_CUTOVER"


# --- FinalizeCutover -------------------------------------------------------------------------------------------


def test_finalize_after_launch_marks_cutover_and_disconnects_replication(cutover):
    # GIVEN a launched cutover instance
    client = cutover()
    job = launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])
    instance_id = job["participatingServers"][0]["launchedEc2InstanceID"]

    # WHEN the cutover is finalized
    server = client.finalize_cutover(sourceServerID=SERVER)

    # THEN the server is CUTOVER, replication disconnected with totals zeroed, the instance still running
    assert server["lifeCycle"]["state"] == "CUTOVER"
    assert server["lifeCycle"]["lastCutover"]["finalized"]["apiCallDateTime"]
    replication = server["dataReplicationInfo"]
    assert replication["dataReplicationState"] == "DISCONNECTED" and "lagDuration" not in replication
    assert all(disk["totalStorageBytes"] == 0 for disk in replication["replicatedDisks"])
    state = boto3.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] == "running"


def test_finalize_while_the_job_runs_is_a_conflict(cutover):
    # GIVEN a cutover whose job has not launched the instance yet
    client = cutover()
    client.start_cutover(sourceServerIDs=[SERVER])

    # WHEN finalize is called
    with pytest.raises(client.exceptions.ConflictException) as raised:
        client.finalize_cutover(sourceServerID=SERVER)

    # THEN it is refused; the server keeps cutting over
    assert error_of(raised) == ("ConflictException", 409)
    assert server_of(client)["lifeCycle"]["state"] == "CUTTING_OVER"


@pytest.mark.parametrize("finalized_before", [False, True])
def test_finalize_outside_cutting_over_is_a_conflict(cutover, finalized_before):
    # GIVEN a server ready for cutover, or one already finalized
    client = cutover()
    if finalized_before:
        launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])
        client.finalize_cutover(sourceServerID=SERVER)

    # WHEN finalize is called
    with pytest.raises(client.exceptions.ConflictException) as raised:
        client.finalize_cutover(sourceServerID=SERVER)

    # THEN it is refused
    assert error_of(raised) == ("ConflictException", 409)


def test_finalize_of_an_unknown_server_is_not_found(cutover):
    # GIVEN a world without OTHER_SERVER
    client = cutover()
    # WHEN finalize names it
    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        client.finalize_cutover(sourceServerID=OTHER_SERVER)

    # THEN MGN answers 404 naming the resource
    assert error_of(raised) == ("ResourceNotFoundException", 404)
    assert raised.value.response["resourceId"] == OTHER_SERVER
    assert raised.value.response["resourceType"] == "SOURCE_SERVER"


# --- ChangeServerLifeCycleState --------------------------------------------------------------------------------


def test_revert_to_ready_for_cutover_keeps_the_launched_instance(cutover):
    # GIVEN a launched cutover instance
    client = cutover()
    job = launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])
    instance_id = job["participatingServers"][0]["launchedEc2InstanceID"]

    # WHEN the server is sent back to ready for cutover
    server = client.change_server_life_cycle_state(sourceServerID=SERVER, lifeCycle={"state": "READY_FOR_CUTOVER"})

    # THEN it is ready again, the revert recorded, and MGN has left the instance alone
    assert server["lifeCycle"]["state"] == "READY_FOR_CUTOVER"
    assert server["lifeCycle"]["lastCutover"]["reverted"]["apiCallDateTime"]
    assert server["launchedInstance"]["ec2InstanceID"] == instance_id
    state = boto3.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] == "running"


def test_new_cutover_after_a_revert_replaces_the_earlier_instance(cutover):
    # GIVEN a cutover that was launched and reverted
    client = cutover()
    first = launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])
    client.change_server_life_cycle_state(sourceServerID=SERVER, lifeCycle={"state": "READY_FOR_CUTOVER"})

    # WHEN a new cutover launches
    second = launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])

    # THEN the earlier instance is terminated and the server points at the new one
    old_id = first["participatingServers"][0]["launchedEc2InstanceID"]
    new_id = second["participatingServers"][0]["launchedEc2InstanceID"]
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in boto3.client("ec2").describe_instances()["Reservations"] for i in r["Instances"]
    }
    assert states == {old_id: "terminated", new_id: "running"}
    assert server_of(client)["launchedInstance"]["ec2InstanceID"] == new_id


def test_lifecycle_change_while_a_job_runs_is_a_conflict(cutover):
    # GIVEN a running cutover job
    client = cutover()
    client.start_cutover(sourceServerIDs=[SERVER])

    # WHEN the server is sent back to ready for cutover
    with pytest.raises(client.exceptions.ConflictException) as raised:
        client.change_server_life_cycle_state(sourceServerID=SERVER, lifeCycle={"state": "READY_FOR_CUTOVER"})

    # THEN it is refused
    assert error_of(raised) == ("ConflictException", 409)


def test_no_way_back_after_finalize(cutover):
    # GIVEN a finalized cutover
    client = cutover()
    launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])
    client.finalize_cutover(sourceServerID=SERVER)

    # WHEN the server is sent back to ready for cutover
    with pytest.raises(client.exceptions.ConflictException) as raised:
        client.change_server_life_cycle_state(sourceServerID=SERVER, lifeCycle={"state": "READY_FOR_CUTOVER"})

    # THEN it is refused: finalize is the point of no return
    assert error_of(raised) == ("ConflictException", 409)
    assert server_of(client)["lifeCycle"]["state"] == "CUTOVER"


def test_marking_a_launched_server_cutover_finalizes_it(cutover):
    # GIVEN a launched cutover instance
    client = cutover()
    launched(client, client.start_cutover(sourceServerIDs=[SERVER])["job"]["jobID"])

    # WHEN the lifecycle is set to CUTOVER directly
    server = client.change_server_life_cycle_state(sourceServerID=SERVER, lifeCycle={"state": "CUTOVER"})

    # THEN it is finalized, replication disconnected
    assert server["lifeCycle"]["state"] == "CUTOVER"
    assert server["dataReplicationInfo"]["dataReplicationState"] == "DISCONNECTED"


def test_marking_an_unlaunched_server_cutover_is_a_conflict(cutover):
    client = cutover()

    # WHEN a server that never launched is marked CUTOVER
    with pytest.raises(client.exceptions.ConflictException):
        client.change_server_life_cycle_state(sourceServerID=SERVER, lifeCycle={"state": "CUTOVER"})

    # THEN it stays ready for cutover
    assert server_of(client)["lifeCycle"]["state"] == "READY_FOR_CUTOVER"


def test_lifecycle_change_of_an_unknown_server_is_not_found(cutover):
    client = cutover()
    # WHEN an unknown server's lifecycle is changed
    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        client.change_server_life_cycle_state(sourceServerID=OTHER_SERVER, lifeCycle={"state": "READY_FOR_CUTOVER"})

    # THEN MGN answers 404
    assert error_of(raised) == ("ResourceNotFoundException", 404)


# --- reading source servers ------------------------------------------------------------------------------------


def test_describe_source_servers_shows_healthy_replication_and_filters(cutover):
    # GIVEN two servers, one of them cutting over
    client = cutover({"servers": {SERVER: {"diskSizesGiB": [8, 20]}}}, servers=(SERVER, OTHER_SERVER))
    client.start_cutover(sourceServerIDs=[OTHER_SERVER])

    # WHEN servers are described, filtered by id, by state and by archive flag
    by_id = client.describe_source_servers(filters={"sourceServerIDs": [SERVER]})["items"]
    ready = client.describe_source_servers(filters={"lifeCycleStates": ["READY_FOR_CUTOVER"]})["items"]
    archived = client.describe_source_servers(filters={"isArchived": True})["items"]

    # THEN each filter narrows as asked, and replication is continuous with one entry per disk
    assert [s["sourceServerID"] for s in by_id] == [SERVER]
    assert [s["sourceServerID"] for s in ready] == [SERVER]
    assert archived == []
    replication = by_id[0]["dataReplicationInfo"]
    assert replication["dataReplicationState"] == "CONTINUOUS" and replication["lagDuration"] == "PT0S"
    assert [d["totalStorageBytes"] for d in replication["replicatedDisks"]] == [8 * 2**30, 20 * 2**30]
    assert by_id[0]["arn"] == f"arn:aws:mgn:us-east-1:{MIGRATION}:source-server/{SERVER}"


def test_another_account_sees_no_source_servers_and_an_uninitialized_one_is_refused(cutover):
    # GIVEN servers in the migration account and MGN initialized in the target account only
    client = cutover()
    target_mgn = pipeline_client("mgn", TARGET)
    credentials = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{OTHER_TARGET}:role/anyone", RoleSessionName="outsider"
    )["Credentials"]
    outsider = boto3.client("mgn", aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"])

    # WHEN each of them asks for source servers
    seen_by_target = target_mgn.describe_source_servers(filters={})["items"]
    with pytest.raises(outsider.exceptions.UninitializedAccountException) as raised:
        outsider.describe_source_servers(filters={})

    # THEN the target sees none and cannot act on them; the account without MGN is refused
    assert seen_by_target == []
    with pytest.raises(target_mgn.exceptions.ResourceNotFoundException):
        target_mgn.finalize_cutover(sourceServerID=SERVER)
    assert error_of(raised) == ("UninitializedAccountException", 400)


def test_source_servers_come_in_pages(cutover):
    # GIVEN two servers
    client = cutover(servers=(SERVER, OTHER_SERVER))

    # WHEN they are listed one per page
    first = client.describe_source_servers(filters={}, maxResults=1)
    second = client.describe_source_servers(filters={}, maxResults=1, nextToken=first["nextToken"])

    # THEN each page holds one server, the last without a next token
    assert [s["sourceServerID"] for s in first["items"] + second["items"]] == [SERVER, OTHER_SERVER]
    assert "nextToken" not in second


def test_acting_on_another_account_through_global_view_is_refused(cutover):
    client = cutover()

    # WHEN a call names another account (MGN global view)
    with pytest.raises(client.exceptions.ValidationException) as raised:
        client.describe_source_servers(filters={}, accountID=TARGET)

    # THEN the sandbox says it does not simulate that
    assert error_of(raised) == ("ValidationException", 400)


# --- tags and launch configuration ------------------------------------------------------------------------------


def test_tags_of_servers_and_jobs(cutover):
    # GIVEN a server tagged by the world and a job tagged at start
    client = cutover({"servers": {SERVER: {"tags": {"TargetAccount": TARGET}}}})
    arn = server_of(client)["arn"]
    job = client.start_cutover(sourceServerIDs=[SERVER], tags={"wave": "w2"})["job"]

    # WHEN a tag is added to the server and the tags are listed
    client.tag_resource(resourceArn=arn, tags={"Owner": "migration-team"})

    # THEN both resources list their tags; an unknown ARN is not found
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {
        "Wave": "sandbox", "TargetAccount": TARGET, "Owner": "migration-team"}
    assert client.list_tags_for_resource(resourceArn=job["arn"])["tags"] == {"wave": "w2"}
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_tags_for_resource(resourceArn=arn.replace(SERVER, OTHER_SERVER))


def test_launch_configuration_and_its_not_found(cutover):
    client = cutover({"servers": {SERVER: {"instanceType": "m5.large", "hostname": "billing-01"}}})
    # WHEN the launch configuration is read, for a known and an unknown server
    configuration = client.get_launch_configuration(sourceServerID=SERVER)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_launch_configuration(sourceServerID=OTHER_SERVER)

    # THEN it shows the world's settings in MGN's shape
    assert configuration["sourceServerID"] == SERVER and configuration["name"] == "billing-01"
    assert configuration["launchDisposition"] == "STARTED" and configuration["copyPrivateIp"] is False
    assert configuration["licensing"] == {"osByol": False}
    assert server_of(client)["sourceProperties"]["recommendedInstanceType"] == "m5.large"


def test_console_cutover_gives_a_completed_job_with_the_requested_id(cutover):
    # GIVEN a world with a server whose cutover someone launched in the MGN console
    client = cutover()
    mgn.active().start_console_cutover([SERVER], "mgnjob-0123456789abcdefA")

    # WHEN the pipeline picks the job up
    job = job_of(client, "mgnjob-0123456789abcdefA")

    # THEN it is complete with the instance launched, and the server cutting over
    assert job["status"] == "COMPLETED"
    assert job["participatingServers"][0]["launchStatus"] == "LAUNCHED"
    assert server_of(client)["lifeCycle"]["state"] == "CUTTING_OVER"


# --- wiring --------------------------------------------------------------------------------------------------


def test_install_is_idempotent_and_uninstall_gives_the_calls_back_to_moto(aws):
    # GIVEN the simulator installed twice
    first = mgn.install()
    second = mgn.install()
    assert first is second
    assert BUILTIN_HANDLERS.count(("before-send.mgn", mgn._dispatch)) == 1
    assert boto3.client("mgn").describe_source_servers(filters={})["items"] == []

    # WHEN it is uninstalled (twice)
    mgn.uninstall()
    mgn.uninstall()

    # THEN no handler is left and a new client's MGN call reaches moto, which has no MGN
    assert ("before-send.mgn", mgn._dispatch) not in BUILTIN_HANDLERS
    assert mgn.active() is None
    with pytest.raises(ClientError):
        boto3.Session().client("mgn").describe_source_servers(filters={})
    aws_rules.uninstall()
