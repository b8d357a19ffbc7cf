"""The restored instance in the target account: launched with the requested placement, verified."""

from __future__ import annotations

import pytest

from pipeline import ledger, names, restore
from pipeline.errors import RestoredInstanceFailed, WaitTimedOut
from sandbox import aws_rules
from tests.unit.support import (
    SOURCE_SERVER_ID,
    TARGET_ACCOUNT,
    account_client,
    instances_tagged,
    migration_client,
    poll,
    server_state,
)

TARGET_KEY_ALIAS = "alias/mgn-cutover-target"


@pytest.fixture
def in_target(world, target_network, claimed_server, target_ec2) -> dict:
    """The state once the target account owns the restored image, and the cutover instance is known,
    for the classic restore from the target's own copy (`restoreFrom: targetImage`).

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
        options={"maxPollAttempts": 5, "restoreFrom": "targetImage"},
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
    # GIVEN an instance that boots in 40 s
    aws_rules.pacing.instance_boot_seconds = 40
    in_target["restored"] = restore.launch(in_target)

    # WHEN it is checked
    result = restore.check(in_target)

    # THEN it is not ready yet, and the wait is counted
    assert (result["ready"], result["attempts"], result["instanceState"]) == (False, 1, "pending")
    assert poll(restore.check, in_target, "restored")["ready"] is True


def test_check_of_a_pending_instance_is_bounded(in_target):
    # GIVEN an instance that stays pending / WHEN checked to the bound / THEN the wait ends
    aws_rules.pacing.instance_boot_seconds = 3600
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


# --- restore straight from the shared image (the default) ------------------------------------------------------------


def volumes_of(ec2, instance: dict) -> dict[str, dict]:
    """The restored instance's volumes by device name."""
    ids = [mapping["Ebs"]["VolumeId"] for mapping in instance["BlockDeviceMappings"]]
    volumes = ec2.describe_volumes(VolumeIds=ids)["Volumes"]
    return {volume["Attachments"][0]["Device"]: volume for volume in volumes}


def test_mappings_re_encrypt_every_volume_of_the_image_and_keep_its_shape():
    # GIVEN a shared image with a root and a data disk of its own sizes, types and deletion flags, and an
    # instance store entry
    image = {"BlockDeviceMappings": [
        {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-1", "VolumeSize": 8, "VolumeType": "gp3",
                                            "DeleteOnTermination": True, "Encrypted": True, "Iops": 3000}},
        {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": "snap-2", "VolumeSize": 100, "VolumeType": "io2",
                                           "DeleteOnTermination": False, "Encrypted": True}},
        {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
    ]}

    # WHEN the launch's mappings are built for the target key
    key = "arn:aws:kms:eu-west-1:222222222222:key/target"
    mappings = restore.reencrypting_mappings(image, key)

    # THEN each EBS device keeps its size, type and deletion flag, is encrypted under the target key, and names
    # no snapshot (the image's own stands); the instance store entry is left to the image
    assert mappings == [
        {"DeviceName": "/dev/xvda", "Ebs": {"Encrypted": True, "KmsKeyId": key, "VolumeSize": 8, "VolumeType": "gp3",
                                            "DeleteOnTermination": True, "Iops": 3000}},
        {"DeviceName": "/dev/sdf", "Ebs": {"Encrypted": True, "KmsKeyId": key, "VolumeSize": 100, "VolumeType": "io2",
                                           "DeleteOnTermination": False}},
    ]


@pytest.fixture
def target_key(world, target_account) -> str:
    return world.ensure_key(target_account, TARGET_KEY_ALIAS)


def test_launch_from_the_shared_image_puts_every_volume_under_the_target_key(shared, target_key, target_ec2,
                                                                              sharing_key):
    # GIVEN the image shared with the target account, under the sharing key, and a request naming the target key
    shared["server"]["target"]["kmsKeyId"] = TARGET_KEY_ALIAS
    shared_image = migration_client("ec2").describe_images(ImageIds=[shared["share"]["imageId"]])["Images"][0]

    # WHEN the restored instance is launched, with no copy of the image in the target account
    restore.launch(shared)

    # THEN it runs from the shared image, one volume per disk of the image, each under the target key
    [instance] = restored_instances(target_ec2)
    assert instance["ImageId"] == shared["share"]["imageId"]
    volumes = volumes_of(target_ec2, instance)
    disks = {m["DeviceName"]: m["Ebs"] for m in shared_image["BlockDeviceMappings"]}
    assert set(volumes) == set(disks)
    for device, volume in volumes.items():
        assert (volume["Encrypted"], volume["KmsKeyId"]) == (True, target_key)
        assert volume["Size"] == disks[device]["VolumeSize"]
    deleted_with_instance = {m["DeviceName"]: m["Ebs"]["DeleteOnTermination"] for m in instance["BlockDeviceMappings"]}
    assert deleted_with_instance == {device: disk["DeleteOnTermination"] for device, disk in disks.items()}
    assert sharing_key not in {volume["KmsKeyId"] for volume in volumes.values()}


def test_launch_from_the_shared_image_without_a_key_uses_the_targets_default_ebs_key(shared, target_ec2, sharing_key):
    # GIVEN a request that names no key for the target
    assert shared["server"]["target"]["kmsKeyId"] is None
    default_key = target_ec2.get_ebs_default_kms_key_id()["KmsKeyId"]

    # WHEN the restored instance is launched from the shared image
    restore.launch(shared)

    # THEN its volumes are under the target account's default EBS key, never the sharing key
    [instance] = restored_instances(target_ec2)
    keys = {volume["KmsKeyId"] for volume in volumes_of(target_ec2, instance).values()}
    assert keys == {default_key}
    assert default_key.split(":")[4] == TARGET_ACCOUNT


def test_launch_from_the_shared_image_needs_no_copy_in_the_target_account(shared, target_key, target_ec2):
    # GIVEN the shared image and no target copy at all
    shared["server"]["target"]["kmsKeyId"] = TARGET_KEY_ALIAS
    assert "targetImage" not in shared

    # WHEN the instance is launched and checked until verified
    shared["restored"] = restore.launch(shared)
    verified = poll(restore.check, shared, "restored")

    # THEN it is verified, and the target account owns no image
    assert verified["ready"] is True
    assert target_ec2.describe_images(Owners=["self"])["Images"] == []
