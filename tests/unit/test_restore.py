"""The restored instance in the target account: launched with the requested placement, verified."""

from __future__ import annotations

import pytest

from pipeline import ledger, names, restore
from pipeline.errors import RestoredInstanceFailed, WaitTimedOut
from sandbox import aws_rules
from tests.unit.support import SOURCE_SERVER_ID, TARGET_ACCOUNT, account_client, instances_tagged, poll, server_state


@pytest.fixture
def in_target(world, target_network, claimed_server, target_ec2) -> dict:
    """The state once the target account owns the restored image, and the cutover instance is known.

    Both are made straight in their accounts: launching reads only the target image and the cutover
    instance's type (the whole way there is exercised by the image and handler tests).
    """
    migration_ec2 = account_client("ec2", "123456789012")
    cutover_instance = migration_ec2.run_instances(
        ImageId="ami-0123456789abcdef0", InstanceType="m5.xlarge", MinCount=1, MaxCount=1
    )["Instances"][0]["InstanceId"]
    builder = target_ec2.run_instances(
        ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, SubnetId=target_network.subnet_id
    )["Instances"][0]["InstanceId"]
    image_id = target_ec2.create_image(InstanceId=builder, Name="restored image of web-01")["ImageId"]
    target_ec2.terminate_instances(InstanceIds=[builder])
    placement = target_network.placement(privateIpAddress="10.20.1.10", instanceProfile=target_network.instance_profile)
    return server_state(
        placement,
        options={"maxPollAttempts": 5},
        claim={"claimed": True, "artifacts": {}},
        cutover={"jobId": "mgnjob-1", "ready": True, "attempts": 0, "cutoverInstanceId": cutover_instance},
        targetImage={"imageId": image_id, "accountId": TARGET_ACCOUNT, "ready": True, "attempts": 0},
    )


def restored_instances(ec2) -> list[dict]:
    return [i for i in instances_tagged(ec2, names.SERVER_TAG, SOURCE_SERVER_ID) if i["State"]["Name"] != "terminated"]


def test_launch_uses_the_requested_placement(in_target, target_network, target_ec2):
    # GIVEN a placement with subnet, two groups, a private IP, a profile, a type and tags
    in_target["server"]["target"].update(instanceType="t3.large", tags={"Name": "web-01", "Application": "storefront"})

    # WHEN the restored instance is launched
    result = restore.launch(in_target)

    # THEN exactly one instance runs from the target image, where and as the request says
    [instance] = restored_instances(target_ec2)
    assert result == {
        "instanceId": instance["InstanceId"],
        "subnetId": target_network.subnet_id,
        "ready": False,
        "attempts": 0,
    }
    assert instance["ImageId"] == in_target["targetImage"]["imageId"]
    assert instance["SubnetId"] == target_network.subnet_id
    assert sorted(group["GroupId"] for group in instance["SecurityGroups"]) == sorted(target_network.security_group_ids)
    assert instance["PrivateIpAddress"] == "10.20.1.10"
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{target_network.instance_profile}")
    assert instance["InstanceType"] == "t3.large"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    tags = {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
    assert tags["Name"] == "web-01" and tags["Application"] == "storefront"
    assert tags[names.STAGE_TAG] == "restored-instance"
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["restoredInstance"] == instance["InstanceId"]


def test_launch_defaults_to_the_cutover_instance_type(in_target, target_ec2):
    # GIVEN a placement that names no instance type
    assert in_target["server"]["target"]["instanceType"] is None

    # WHEN the instance is launched
    restore.launch(in_target)

    # THEN it has the type MGN gave the cutover instance
    [instance] = restored_instances(target_ec2)
    assert instance["InstanceType"] == "m5.xlarge"


def test_launch_without_optional_placement_lets_ec2_choose(in_target, target_ec2):
    # GIVEN a placement with neither private IP nor profile
    in_target["server"]["target"].update(privateIpAddress=None, instanceProfile=None)

    # WHEN the instance is launched
    restore.launch(in_target)

    # THEN EC2 picked an address in the subnet, and no profile is attached
    [instance] = restored_instances(target_ec2)
    assert instance["PrivateIpAddress"].startswith("10.20.1.")
    assert "IamInstanceProfile" not in instance


def test_launch_without_a_profile_uses_the_target_stacks_default(in_target, target_network, target_ec2, monkeypatch):
    # GIVEN the request names no profile, and the stack names the target stack's profile
    monkeypatch.setenv("DEFAULT_INSTANCE_PROFILE", target_network.instance_profile)
    in_target["server"]["target"]["instanceProfile"] = None

    # WHEN the instance is launched
    restore.launch(in_target)

    # THEN it carries that profile, so its SSM agent can register
    [instance] = restored_instances(target_ec2)
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{target_network.instance_profile}")


def test_launch_twice_leaves_one_instance(in_target, target_ec2):
    # GIVEN the launch ran once
    first = restore.launch(in_target)

    # WHEN the step runs again
    second = restore.launch(in_target)

    # THEN it found the first instance
    assert second["instanceId"] == first["instanceId"]
    assert len(restored_instances(target_ec2)) == 1


def test_check_is_ready_when_running_with_both_checks_ok(in_target):
    # GIVEN a launched instance
    in_target["restored"] = restore.launch(in_target)

    # WHEN it is checked
    result = restore.check(in_target)

    # THEN it is ready, and reports the address it got
    assert result["ready"] is True
    assert result["privateIpAddress"] == "10.20.1.10"
    assert result["instanceId"] == in_target["restored"]["instanceId"]


def test_check_waits_while_the_instance_is_pending(in_target):
    # GIVEN an instance that stays pending for a few checks
    aws_rules.pacing.instance_polls = 2
    in_target["restored"] = restore.launch(in_target)

    # WHEN it is checked
    result = restore.check(in_target)

    # THEN it is not ready yet, and the wait is counted
    assert (result["ready"], result["attempts"], result["instanceState"]) == (False, 1, "pending")
    assert poll(restore.check, in_target, "restored")["ready"] is True


def test_check_of_a_pending_instance_is_bounded(in_target):
    # GIVEN an instance that stays pending / WHEN checked to the bound / THEN the wait ends
    aws_rules.pacing.instance_polls = 50
    in_target["options"]["maxPollAttempts"] = 2
    in_target["restored"] = restore.launch(in_target)
    in_target["restored"] = restore.check(in_target)
    with pytest.raises(WaitTimedOut):
        restore.check(in_target)


@pytest.mark.parametrize("stop", ["stop_instances", "terminate_instances"])
def test_check_of_a_stopped_or_terminated_instance_fails(in_target, target_ec2, stop):
    # GIVEN the restored instance was stopped or terminated before it was verified
    in_target["restored"] = restore.launch(in_target)
    getattr(target_ec2, stop)(InstanceIds=[in_target["restored"]["instanceId"]])

    # WHEN / THEN the check fails the branch, naming the instance and its state
    with pytest.raises(RestoredInstanceFailed, match=in_target["restored"]["instanceId"]):
        restore.check(in_target)


def test_terminate_is_idempotent(in_target, target_ec2):
    # GIVEN a restored instance / WHEN terminated, and an unknown one too / THEN both are fine
    instance_id = restore.launch(in_target)["instanceId"]
    assert restore.terminate(TARGET_ACCOUNT, instance_id) == [f"restored instance {instance_id}"]
    assert restore.terminate(TARGET_ACCOUNT, "i-0123456789abcdef0") == []
    assert restored_instances(target_ec2) == []
