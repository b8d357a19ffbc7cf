"""The AWS rules add to moto what the pipeline depends on: sharing across accounts, keys carried through copies,
images that take time, SSM managed instances, and the target role's external id."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from sandbox_helpers import MIGRATION, TARGET, pipeline_client, poll

from sandbox import aws_rules
from sandbox.world import DEFAULT_INSTANCE_PROFILE, DEFAULT_TARGET_ROLE_NAME, World

UNKNOWN_IMAGE = "ami-0123456789abcdef0"
TARGET_ROLE_ARN = f"arn:aws:iam::{TARGET}:role/{DEFAULT_TARGET_ROLE_NAME}"
KEY_USE = ["Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKeyWithoutPlaintext", "DescribeKey", "CreateGrant"]


def launch(ec2, disks: list[tuple[str, int, str | None]], **extra) -> str:
    """An instance with one encrypted volume per (device, GiB, key or None for the default EBS key)."""
    mappings = [
        {"DeviceName": device, "Ebs": {"VolumeSize": size, "Encrypted": True, **({"KmsKeyId": key} if key else {})}}
        for device, size, key in disks
    ]
    return ec2.run_instances(ImageId=UNKNOWN_IMAGE, MinCount=1, MaxCount=1, BlockDeviceMappings=mappings,
                             **extra)["Instances"][0]["InstanceId"]


def image(ec2, image_id: str) -> dict:
    return ec2.describe_images(ImageIds=[image_id])["Images"][0]


def settled(ec2, image_id: str) -> dict:
    answer, _ = poll(lambda: image(ec2, image_id), lambda found: found["State"] != "pending")
    return answer


def snapshot_ids(described: dict) -> list[str]:
    return [mapping["Ebs"]["SnapshotId"] for mapping in described["BlockDeviceMappings"]]


def code_of(raised: pytest.ExceptionInfo) -> str:
    return raised.value.response["Error"]["Code"]


def volumes_of(ec2, instance_id: str) -> list[dict]:
    return ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"]


def instance_of(ec2, instance_id: str) -> dict:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


@pytest.fixture
def sharing_key(world: World) -> str:
    return world.ensure_key(MIGRATION, "alias/sharing")


@pytest.fixture
def shared_image(world: World, sharing_key: str) -> dict:
    """An available two-disk image under the sharing key in the migration account, tagged, not shared yet."""
    ec2 = boto3.client("ec2")
    instance_id = launch(ec2, [("/dev/sda1", 8, sharing_key), ("/dev/sdb", 20, sharing_key)])
    image_id = ec2.create_image(InstanceId=instance_id, Name="cutover-s-1",
                                TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "Wave", "Value": "1"}]}]
                                )["ImageId"]
    return settled(ec2, image_id)


def share(image_desc: dict, *, snapshots: list[str] | None = None, key: str | None = None) -> None:
    """Share the image with TARGET, then the snapshots named (default all), and the key by grant if given."""
    ec2 = boto3.client("ec2")
    ec2.modify_image_attribute(ImageId=image_desc["ImageId"], LaunchPermission={"Add": [{"UserId": TARGET}]})
    for snapshot_id in snapshot_ids(image_desc) if snapshots is None else snapshots:
        ec2.modify_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission",
                                      OperationType="add", UserIds=[TARGET])
    if key:
        boto3.client("kms").create_grant(KeyId=key, GranteePrincipal=TARGET_ROLE_ARN, Operations=KEY_USE)


# --- images and snapshots across accounts -------------------------------------------------------------------


def test_image_is_invisible_to_another_account_until_shared(world, shared_image):
    target = pipeline_client("ec2", TARGET)
    image_id = shared_image["ImageId"]

    # GIVEN an image the migration account has not shared: the target can neither find nor list it
    with pytest.raises(ClientError) as raised:
        target.describe_images(ImageIds=[image_id])
    assert code_of(raised) == "InvalidAMIID.NotFound"
    assert target.describe_images(ExecutableUsers=["self"])["Images"] == []

    # WHEN the migration account adds a launch permission for the target
    share(shared_image, snapshots=[])

    # THEN the target finds it by id and as executable by itself, owned by the migration account, without its
    # owner's tags; it is not among the images the target owns
    seen = image(target, image_id)
    assert seen["OwnerId"] == MIGRATION and "Tags" not in seen
    assert [i["ImageId"] for i in target.describe_images(ExecutableUsers=["self"])["Images"]] == [image_id]
    assert target.describe_images(Owners=["self"])["Images"] == []
    assert image(boto3.client("ec2"), image_id)["Tags"] == [{"Key": "Wave", "Value": "1"}]


def test_removing_the_launch_permission_hides_the_image_again(world, shared_image):
    # GIVEN an image shared with the target
    share(shared_image, snapshots=[])
    target = pipeline_client("ec2", TARGET)

    # WHEN the permission is removed
    boto3.client("ec2").modify_image_attribute(
        ImageId=shared_image["ImageId"], LaunchPermission={"Remove": [{"UserId": TARGET}]}
    )

    # THEN the target cannot see it any more
    with pytest.raises(ClientError) as raised:
        target.describe_images(ImageIds=[shared_image["ImageId"]])
    assert code_of(raised) == "InvalidAMIID.NotFound"
    assert target.describe_images(ExecutableUsers=["self"])["Images"] == []


def test_shared_snapshots_are_visible_by_id_and_as_restorable(world, shared_image, sharing_key):
    migration = boto3.client("ec2")
    target = pipeline_client("ec2", TARGET)
    first, second = snapshot_ids(shared_image)

    # GIVEN snapshots the target has no permission on
    with pytest.raises(ClientError) as raised:
        target.describe_snapshots(SnapshotIds=[first])
    assert code_of(raised) == "InvalidSnapshot.NotFound"

    # WHEN both are shared, one in each form ModifySnapshotAttribute takes
    migration.modify_snapshot_attribute(SnapshotId=first, Attribute="createVolumePermission",
                                        CreateVolumePermission={"Add": [{"UserId": TARGET}]})
    migration.modify_snapshot_attribute(SnapshotId=second, Attribute="createVolumePermission",
                                        OperationType="add", UserIds=[TARGET])

    # THEN the target sees them as restorable by itself and by id, with their key, but does not own them
    restorable = target.describe_snapshots(RestorableByUserIds=["self"])["Snapshots"]
    assert sorted(s["SnapshotId"] for s in restorable) == sorted([first, second])
    assert {(s["OwnerId"], s["KmsKeyId"]) for s in restorable} == {(MIGRATION, sharing_key)}
    assert target.describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
    assert target.describe_snapshots(SnapshotIds=[first])["Snapshots"][0]["Encrypted"] is True
    permissions = migration.describe_snapshot_attribute(SnapshotId=first, Attribute="createVolumePermission")
    assert permissions["CreateVolumePermissions"] == [{"UserId": TARGET}]

    # AND WHEN the permission on one is removed, that one disappears from the target's view
    migration.modify_snapshot_attribute(SnapshotId=first, Attribute="createVolumePermission",
                                        CreateVolumePermission={"Remove": [{"UserId": TARGET}]})
    assert [s["SnapshotId"] for s in target.describe_snapshots(RestorableByUserIds=["self"])["Snapshots"]] == [second]


def test_copy_of_a_shared_image_needs_permission_on_every_snapshot(world, shared_image, sharing_key):
    # GIVEN an image shared with the target, but only one of its two snapshots
    share(shared_image, snapshots=snapshot_ids(shared_image)[:1], key=sharing_key)
    target = pipeline_client("ec2", TARGET)

    # WHEN the target copies it
    with pytest.raises(ClientError) as raised:
        target.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="restored")

    # THEN AWS's storage error is raised and the target owns no image
    assert code_of(raised) == "InvalidRequest"
    assert raised.value.response["Error"]["Message"] == "You do not have permission to access the storage of this ami"
    assert target.describe_images(Owners=["self"])["Images"] == []


def test_copy_of_an_image_not_shared_is_not_found(world, shared_image):
    target = pipeline_client("ec2", TARGET)

    # WHEN the target copies an image nobody shared with it
    with pytest.raises(ClientError) as raised:
        target.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="restored")

    # THEN the image does not exist as far as the target is concerned
    assert code_of(raised) == "InvalidAMIID.NotFound"


def test_run_instances_from_another_accounts_image_needs_launch_permission(world, shared_image, sharing_key):
    target = pipeline_client("ec2", TARGET)

    # GIVEN an image not shared yet: launching it in the target fails
    with pytest.raises(ClientError) as raised:
        target.run_instances(ImageId=shared_image["ImageId"], MinCount=1, MaxCount=1)
    assert code_of(raised) == "InvalidAMIID.NotFound"

    # WHEN it is shared (with a grant on its key) and launched
    share(shared_image, snapshots=[], key=sharing_key)
    instance_id = target.run_instances(ImageId=shared_image["ImageId"], MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"]
    world.clock.sleep(aws_rules.pacing.instance_boot_seconds)

    # THEN the instance runs (once booted) with one volume per image disk, restored from those snapshots under
    # their key
    assert instance_of(target, instance_id)["State"]["Name"] == "running"
    volumes = volumes_of(target, instance_id)
    assert sorted((v["Size"], v["SnapshotId"]) for v in volumes) == sorted(
        zip([8, 20], snapshot_ids(shared_image)))
    assert {v["KmsKeyId"] for v in volumes} == {sharing_key}


def reencrypt(image_desc: dict, key: str, **override) -> list[dict]:
    """Mappings for every disk of the image, each re-encrypted under `key` (as the restore from a shared image)."""
    return [{"DeviceName": m["DeviceName"], "Ebs": {"Encrypted": True, "KmsKeyId": key, **override}}
            for m in image_desc["BlockDeviceMappings"]]


def test_a_shared_image_launches_under_the_launchers_key_with_its_key_but_no_snapshot_permission(
        world, shared_image, sharing_key):
    target = pipeline_client("ec2", TARGET)
    target_key = world.ensure_key(TARGET, "alias/mgn-cutover-target")

    # GIVEN the image shared with a launch permission and a grant on its key, and no createVolumePermission
    share(shared_image, snapshots=[], key=sharing_key)
    with pytest.raises(ClientError) as raised:
        target.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="needs-snapshots")
    assert code_of(raised) == "InvalidRequest"

    # WHEN the target launches it with every disk re-encrypted under its own key
    instance_id = target.run_instances(ImageId=shared_image["ImageId"], MinCount=1, MaxCount=1,
                                       BlockDeviceMappings=reencrypt(shared_image, target_key))["Instances"][0][
        "InstanceId"]
    world.clock.sleep(aws_rules.pacing.instance_boot_seconds)

    # THEN the instance runs, each volume made from the image's snapshot, with its size, under the target key
    assert instance_of(target, instance_id)["State"]["Name"] == "running"
    volumes = volumes_of(target, instance_id)
    assert sorted((v["Size"], v["SnapshotId"]) for v in volumes) == sorted(zip([8, 20], snapshot_ids(shared_image)))
    assert {(v["Encrypted"], v["KmsKeyId"]) for v in volumes} == {(True, target_key)}


def test_a_shared_image_without_its_key_terminates_at_launch(world, shared_image):
    target = pipeline_client("ec2", TARGET)
    target_key = world.ensure_key(TARGET, "alias/mgn-cutover-target")

    # GIVEN the image shared with a launch permission only: no grant and no key policy on the sharing key
    share(shared_image, snapshots=[])

    # WHEN the target launches it re-encrypted under its own key
    instance_id = target.run_instances(ImageId=shared_image["ImageId"], MinCount=1, MaxCount=1,
                                       BlockDeviceMappings=reencrypt(shared_image, target_key))["Instances"][0][
        "InstanceId"]

    # THEN EC2 accepts the call, and the instance goes to terminated with AWS's state reason
    described = instance_of(target, instance_id)
    assert described["State"]["Name"] == "terminated"
    assert described["StateReason"]["Code"] == "Client.InternalError"


def test_a_launch_mapping_naming_a_key_the_launcher_cannot_use_terminates_the_instance(world, shared_image,
                                                                                        sharing_key):
    target = pipeline_client("ec2", TARGET)
    # GIVEN the image shared with its key, and a mapping naming a key of another account the target may not use
    share(shared_image, snapshots=[], key=sharing_key)
    foreign_key = world.ensure_key(MIGRATION, "alias/someone-elses")

    # WHEN launched with that key for its volumes
    instance_id = target.run_instances(ImageId=shared_image["ImageId"], MinCount=1, MaxCount=1,
                                       BlockDeviceMappings=reencrypt(shared_image, foreign_key))["Instances"][0][
        "InstanceId"]

    # THEN the instance terminates at launch (Client.InternalError), as AWS does when EBS cannot write the volume
    described = instance_of(target, instance_id)
    assert (described["State"]["Name"], described["StateReason"]["Code"]) == ("terminated", "Client.InternalError")


def test_a_launch_mapping_cannot_take_the_encryption_off_a_shared_encrypted_disk(world, shared_image, sharing_key):
    target = pipeline_client("ec2", TARGET)
    share(shared_image, snapshots=[], key=sharing_key)
    target_key = world.ensure_key(TARGET, "alias/mgn-cutover-target")
    root = shared_image["BlockDeviceMappings"][0]["DeviceName"]

    # GIVEN a mapping that asks for the root volume unencrypted / WHEN launched / THEN EC2 refuses the mapping
    with pytest.raises(ClientError) as raised:
        target.run_instances(ImageId=shared_image["ImageId"], MinCount=1, MaxCount=1,
                             BlockDeviceMappings=[{"DeviceName": root, "Ebs": {"Encrypted": False}}])
    assert code_of(raised) == "InvalidBlockDeviceMapping"

    # AND a key without Encrypted true is refused too
    with pytest.raises(ClientError) as raised:
        target.run_instances(ImageId=shared_image["ImageId"], MinCount=1, MaxCount=1,
                             BlockDeviceMappings=[{"DeviceName": root, "Ebs": {"KmsKeyId": target_key}}])
    assert code_of(raised) == "InvalidParameterDependency"
    assert [r for r in target.describe_instances()["Reservations"]] == []


def test_the_default_ebs_key_is_the_accounts_own(world):
    # GIVEN a target account with no default key chosen / WHEN asked / THEN EC2 names the account's EBS key
    key = pipeline_client("ec2", TARGET).get_ebs_default_kms_key_id()["KmsKeyId"]
    assert key.split(":")[4] == TARGET
    assert pipeline_client("kms", TARGET).describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"] == key


def test_copies_beyond_the_accounts_limit_are_refused_until_one_finishes(world, shared_image):
    ec2 = boto3.client("ec2")
    # GIVEN a limit of two copies in flight, and two copies started
    aws_rules.limits.concurrent_image_copies = 2
    first = ec2.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="copy-1",
                           ClientToken="copy-1")["ImageId"]
    ec2.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="copy-2")

    # WHEN a third copy is asked for / THEN EC2 refuses it, while the same request of a started one is answered
    with pytest.raises(ClientError) as raised:
        ec2.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="copy-3")
    assert code_of(raised) == "ResourceLimitExceeded"
    assert ec2.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="copy-1",
                          ClientToken="copy-1")["ImageId"] == first
    # ... and another account's copies do not count against this one's limit
    assert aws_rules.copies_in_flight(aws_rules.ec2_backend(TARGET, "us-east-1")) == []

    # AND once the copies have finished, the next one starts
    settled(ec2, first)
    third = ec2.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="copy-3")["ImageId"]
    assert image(ec2, third)["State"] == "pending"


# --- encryption carried through ---------------------------------------------------------------------------------


def test_create_image_snapshots_every_volume_under_its_own_key(world, sharing_key):
    ec2 = boto3.client("ec2")
    # GIVEN an instance with a root volume under the AWS managed key and a data volume under a CMK
    instance_id = launch(ec2, [("/dev/sda1", 8, None), ("/dev/sdb", 50, sharing_key)])
    default_key = boto3.client("kms").describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]

    # WHEN an image is made of it, with tags for the snapshots
    image_id = ec2.create_image(
        InstanceId=instance_id, Name="cutover-two-disks",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "Server", "Value": "s-1"}]}],
    )["ImageId"]
    described = settled(ec2, image_id)

    # THEN it has one mapping per volume showing Encrypted and the snapshot, not the key (as AWS shows it) ...
    mappings = {m["DeviceName"]: m["Ebs"] for m in described["BlockDeviceMappings"]}
    assert set(mappings) == {"/dev/sda1", "/dev/sdb"}
    assert all(ebs["Encrypted"] is True and "KmsKeyId" not in ebs for ebs in mappings.values())
    assert (mappings["/dev/sda1"]["VolumeSize"], mappings["/dev/sdb"]["VolumeSize"]) == (8, 50)
    assert described["RootDeviceName"] == "/dev/sda1" and described["RootDeviceType"] == "ebs"

    # ... and each snapshot carries its volume's key ARN, the tags asked for, and AWS's description
    snapshots = {s["SnapshotId"]: s for s in ec2.describe_snapshots(SnapshotIds=snapshot_ids(described))["Snapshots"]}
    assert snapshots[mappings["/dev/sda1"]["SnapshotId"]]["KmsKeyId"] == default_key
    assert snapshots[mappings["/dev/sdb"]["SnapshotId"]]["KmsKeyId"] == sharing_key
    assert all(s["Tags"] == [{"Key": "Server", "Value": "s-1"}] for s in snapshots.values())
    assert all(s["Description"] == f"Created by CreateImage({instance_id}) for {image_id}" for s in snapshots.values())


def test_copy_image_re_encrypts_under_the_key_it_names(world, sharing_key):
    ec2 = boto3.client("ec2")
    # GIVEN an image under the AWS managed EBS key, like the cutover instance's
    instance_id = launch(ec2, [("/dev/sda1", 8, None)])
    source = settled(ec2, ec2.create_image(InstanceId=instance_id, Name="cutover")["ImageId"])

    # WHEN it is copied encrypted under the sharing key, named by alias
    copy_id = ec2.copy_image(SourceImageId=source["ImageId"], SourceRegion="us-east-1", Name="shareable",
                             Encrypted=True, KmsKeyId="alias/sharing")["ImageId"]
    copy = settled(ec2, copy_id)

    # THEN the copy's snapshots are under the key's ARN, and the copy names its source
    snapshots = ec2.describe_snapshots(SnapshotIds=snapshot_ids(copy))["Snapshots"]
    assert [s["KmsKeyId"] for s in snapshots] == [sharing_key]
    assert copy["State"] == "available" and copy["SourceImageId"] == source["ImageId"]
    assert snapshot_ids(copy) != snapshot_ids(source)


def test_copy_image_without_a_key_keeps_the_source_key_in_the_same_account(world, shared_image, sharing_key):
    ec2 = boto3.client("ec2")

    # WHEN an encrypted image is copied without naming a key
    copy = settled(ec2, ec2.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1",
                                       Name="same-key")["ImageId"])

    # THEN the copy stays under the source's key
    snapshots = ec2.describe_snapshots(SnapshotIds=snapshot_ids(copy))["Snapshots"]
    assert {s["KmsKeyId"] for s in snapshots} == {sharing_key}


def test_target_copies_a_shared_image_under_its_own_key_once_it_may_use_the_source_key(world, shared_image,
                                                                                       sharing_key):
    target_key = world.ensure_key(TARGET, "alias/target-ebs")
    target = pipeline_client("ec2", TARGET)
    # GIVEN an image and its snapshots shared with the target, but no grant on the sharing key
    share(shared_image)

    # WHEN the target copies it under its own key
    refused = target.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="restored",
                                Encrypted=True, KmsKeyId="alias/target-ebs")["ImageId"]

    # THEN the call is accepted but the copy fails later, as AWS checks the key asynchronously
    failed = settled(target, refused)
    assert failed["State"] == "failed"
    assert failed["StateReason"]["Code"] == "Client.InvalidKMSKey.InvalidState"
    assert sharing_key in failed["StateReason"]["Message"]

    # AND WHEN the key is granted to the target role, a new copy becomes available under the target's key
    boto3.client("kms").create_grant(KeyId=sharing_key, GranteePrincipal=TARGET_ROLE_ARN, Operations=KEY_USE)
    copy = settled(target, target.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1",
                                             Name="restored-again", Encrypted=True,
                                             KmsKeyId="alias/target-ebs")["ImageId"])
    assert copy["State"] == "available" and copy["OwnerId"] == TARGET
    snapshots = target.describe_snapshots(SnapshotIds=snapshot_ids(copy))["Snapshots"]
    assert {(s["OwnerId"], s["KmsKeyId"]) for s in snapshots} == {(TARGET, target_key)}


def test_a_key_policy_naming_the_target_account_lets_it_copy(world):
    kms, ec2 = boto3.client("kms"), boto3.client("ec2")
    # GIVEN an image under a key whose policy lets the target account's principals use it (no grant)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{MIGRATION}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{TARGET}:root"]},
         "Action": ["kms:Decrypt", "kms:ReEncrypt*", "kms:DescribeKey", "kms:CreateGrant"], "Resource": "*"}]}
    key = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["Arn"]
    described = settled(ec2, ec2.create_image(InstanceId=launch(ec2, [("/dev/sda1", 8, key)]), Name="by-policy")[
        "ImageId"])
    share(described)

    # WHEN the target copies it under its own key
    world.ensure_key(TARGET, "alias/target-ebs")
    target = pipeline_client("ec2", TARGET)
    copy = settled(target, target.copy_image(SourceImageId=described["ImageId"], SourceRegion="us-east-1",
                                             Name="restored", Encrypted=True, KmsKeyId="alias/target-ebs")["ImageId"])

    # THEN the copy is available: the key policy was enough
    assert copy["State"] == "available"


def test_copy_under_a_key_that_does_not_exist_fails_later(world, shared_image):
    ec2 = boto3.client("ec2")

    # WHEN an image is copied under a key nobody created
    copy_id = ec2.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="no-key",
                             Encrypted=True, KmsKeyId="alias/does-not-exist")["ImageId"]

    # THEN the copy ends failed, its snapshots in error
    failed = settled(ec2, copy_id)
    assert failed["State"] == "failed"
    states = {s["State"] for s in ec2.describe_snapshots(SnapshotIds=snapshot_ids(failed))["Snapshots"]}
    assert states == {"error"}


def test_launch_overrides_the_image_key_with_the_one_in_the_block_device_mapping(world, shared_image, sharing_key):
    target_key = world.ensure_key(TARGET, "alias/target-ebs")
    share(shared_image, snapshots=[], key=sharing_key)
    target = pipeline_client("ec2", TARGET)

    # WHEN the target launches the shared image re-encrypting the root volume under its own key
    instance_id = target.run_instances(
        ImageId=shared_image["ImageId"], MinCount=1, MaxCount=1,
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"Encrypted": True, "KmsKeyId": "alias/target-ebs"}}],
    )["Instances"][0]["InstanceId"]

    # THEN the root volume is under the target's key, the other keeps its snapshot's key, sizes from the image
    volumes = {v["Attachments"][0]["Device"]: v for v in volumes_of(target, instance_id)}
    assert (volumes["/dev/sda1"]["KmsKeyId"], volumes["/dev/sda1"]["Size"]) == (target_key, 8)
    assert (volumes["/dev/sdb"]["KmsKeyId"], volumes["/dev/sdb"]["Size"]) == (sharing_key, 20)


def test_launch_from_an_image_under_a_key_the_account_cannot_use_terminates_the_instance(world, shared_image):
    # GIVEN an image shared with the target without any grant on its key
    share(shared_image, snapshots=[])
    target = pipeline_client("ec2", TARGET)

    # WHEN the target launches it
    instance_id = target.run_instances(ImageId=shared_image["ImageId"], MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"]

    # THEN the instance terminates right after launch with EC2's client error
    described = instance_of(target, instance_id)
    assert described["State"]["Name"] == "terminated"
    assert described["StateReason"]["Code"] == "Client.InternalError"


def test_what_the_aws_managed_key_encrypts_cannot_be_shared(world):
    ec2 = boto3.client("ec2")
    # GIVEN an image whose snapshot is under the AWS managed EBS key
    described = settled(ec2, ec2.create_image(InstanceId=launch(ec2, [("/dev/sda1", 8, None)]),
                                              Name="cutover")["ImageId"])
    key = boto3.client("kms").describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]

    # WHEN the image and then its snapshot are shared with the target
    with pytest.raises(ClientError) as image_refused:
        ec2.modify_image_attribute(ImageId=described["ImageId"], LaunchPermission={"Add": [{"UserId": TARGET}]})
    with pytest.raises(ClientError) as snapshot_refused:
        ec2.modify_snapshot_attribute(SnapshotId=snapshot_ids(described)[0], Attribute="createVolumePermission",
                                      OperationType="add", UserIds=[TARGET])

    # THEN both are refused with AWS's codes; the key is AWS managed; nothing was shared
    assert key["KeyManager"] == "AWS"
    assert code_of(image_refused) == "InvalidParameter"
    assert "AWS Managed CMK can't be shared" in image_refused.value.response["Error"]["Message"]
    assert code_of(snapshot_refused) == "OperationNotPermitted"
    attribute = ec2.describe_image_attribute(ImageId=described["ImageId"], Attribute="launchPermission")
    assert attribute["LaunchPermissions"] == []


def test_image_names_are_unique_within_an_account(world, shared_image):
    ec2 = boto3.client("ec2")

    # WHEN a second image is made or copied under a name the account already uses
    with pytest.raises(ClientError) as created:
        ec2.create_image(InstanceId=launch(ec2, [("/dev/sda1", 8, None)]), Name="cutover-s-1")
    with pytest.raises(ClientError) as copied:
        ec2.copy_image(SourceImageId=shared_image["ImageId"], SourceRegion="us-east-1", Name="cutover-s-1")

    # THEN both are refused naming the image that holds the name
    for raised in (created, copied):
        assert code_of(raised) == "InvalidAMIName.Duplicate"
        assert shared_image["ImageId"] in raised.value.response["Error"]["Message"]


def test_copy_image_with_the_same_client_token_returns_the_same_copy(world, shared_image):
    ec2 = boto3.client("ec2")
    request = {"SourceImageId": shared_image["ImageId"], "SourceRegion": "us-east-1", "Name": "retried",
               "ClientToken": "copy-s-1"}

    # WHEN the same copy is requested twice with one client token
    first = ec2.copy_image(**request)["ImageId"]
    second = ec2.copy_image(**request)["ImageId"]

    # THEN one image exists for both calls
    assert first == second
    assert [i["ImageId"] for i in ec2.describe_images(Owners=["self"], Filters=[
        {"Name": "name", "Values": ["retried"]}])["Images"]] == [first]


@pytest.mark.parametrize("delete_snapshots", [True, False])
def test_deregister_image_deletes_its_snapshots_only_when_asked(world, shared_image, delete_snapshots):
    ec2 = boto3.client("ec2")
    snapshots = snapshot_ids(shared_image)

    # WHEN the image is deregistered
    answer = ec2.deregister_image(ImageId=shared_image["ImageId"], DeleteAssociatedSnapshots=delete_snapshots)

    # THEN the snapshots go with it only when asked, and the answer says so
    left = [s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]]
    if delete_snapshots:
        assert left == []
        assert sorted(r["SnapshotId"] for r in answer["DeleteSnapshotResults"]) == sorted(snapshots)
    else:
        assert sorted(left) == sorted(snapshots) and "DeleteSnapshotResults" not in answer


# --- things that take time -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mib_per_second, seconds", [(0, 0.0), (100, 81.92), (50, 163.84)])
def test_new_images_stay_pending_until_their_snapshots_are_written(aws, mib_per_second, seconds):
    # GIVEN a world writing snapshots at `mib_per_second`, and an instance with an 8 GiB volume
    with World({"speed": {"snapshotMiBps": mib_per_second}}) as world:
        ec2 = boto3.client("ec2")
        image_id = ec2.create_image(InstanceId=launch(ec2, [("/dev/sda1", 8, None)]), Name="cutover")["ImageId"]

        # WHEN it is described just before its 8 GiB are written, and when they are
        world.clock.sleep(max(0.0, seconds - 0.01))
        before = image(ec2, image_id)["State"]
        world.clock.sleep(0.01)
        described = image(ec2, image_id)

        # THEN it was pending until then (unless the world writes at once), then available, its snapshot completed
        assert (before, described["State"]) == ("pending" if seconds else "available", "available")
        snapshot = ec2.describe_snapshots(SnapshotIds=snapshot_ids(described))["Snapshots"][0]
        assert snapshot["State"] == "completed"
        # AND the clock holds the operation, a full copy of the data
        [operation] = [op for op in world.clock.operations if op.name == "CreateImage"]
        assert (operation.name, round(operation.seconds, 2), operation.full_copy) == ("CreateImage", seconds, True)


def test_snapshots_of_a_pending_image_are_pending(aws):
    with World({}):
        ec2 = boto3.client("ec2")
        # WHEN an image is created and looked at at once
        image_id = ec2.create_image(InstanceId=launch(ec2, [("/dev/sda1", 8, None)]), Name="cutover")["ImageId"]
        described = image(ec2, image_id)

        # THEN it and its snapshot are both pending
        snapshot = ec2.describe_snapshots(SnapshotIds=snapshot_ids(described))["Snapshots"][0]
        assert (described["State"], snapshot["State"]) == ("pending", "pending")


def test_instances_stay_pending_until_they_have_booted(aws):
    # GIVEN a world whose instances take 40 s to boot
    with World({"speed": {"instanceBootSeconds": 40}}) as world:
        ec2 = boto3.client("ec2")
        instance_id = launch(ec2, [("/dev/sda1", 8, None)])

        # WHEN the instance is described at once, after 39 s, and after 40 s
        states = []
        for seconds in (0, 39, 1):
            world.clock.sleep(seconds)
            states.append(instance_of(ec2, instance_id)["State"]["Name"])

        # THEN it was pending until it had booted, then running; DescribeInstanceStatus shows it running
        assert states == ["pending", "pending", "running"]
        assert ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"][0]["InstanceState"][
            "Name"] == "running"


# --- SSM managed instances -----------------------------------------------------------------------------------


def launch_in_target(profile: str | None = DEFAULT_INSTANCE_PROFILE) -> tuple[object, str]:
    ec2 = pipeline_client("ec2", TARGET)
    extra = {"IamInstanceProfile": {"Name": profile}} if profile else {}
    return ec2, ec2.run_instances(ImageId=UNKNOWN_IMAGE, MinCount=1, MaxCount=1, **extra)["Instances"][0]["InstanceId"]


def information(ssm, **filters) -> list[dict]:
    return ssm.describe_instance_information(**filters)["InstanceInformationList"]


def test_instance_with_the_ssm_role_registers_once_its_agent_checks_in(world):
    # GIVEN a restored instance launched with the instance profile the target stack provides
    _, instance_id = launch_in_target()
    ssm = pipeline_client("ssm", TARGET)

    # WHEN SSM is asked for managed instances until it appears, 10 s apart
    listed, calls = poll(lambda: information(ssm), lambda found: bool(found), attempts=20, every=10)

    # THEN it shows once it has booted (40 s) and its agent checked in (90 s more): at the 14th call, 130 s in,
    # online, as an EC2 instance with the profile's role
    assert calls == 14
    assert [(i["InstanceId"], i["PingStatus"], i["ResourceType"]) for i in listed] == [
        (instance_id, "Online", "EC2Instance")]
    assert listed[0]["IamRole"] == DEFAULT_INSTANCE_PROFILE and listed[0]["PlatformType"] == "Linux"
    assert listed[0]["IPAddress"] and listed[0]["SourceId"] == instance_id


def test_instances_without_the_ssm_policy_never_register(world):
    # GIVEN one instance without a profile and one whose profile's role lacks AmazonSSMManagedInstanceCore
    iam = world.client("iam", TARGET)
    iam.create_role(RoleName="Bare", AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName="Bare")
    iam.add_role_to_instance_profile(InstanceProfileName="Bare", RoleName="Bare")
    launch_in_target(profile=None)
    launch_in_target(profile="Bare")
    ssm = pipeline_client("ssm", TARGET)

    # WHEN SSM is asked several times
    answers = [information(ssm) for _ in range(4)]

    # THEN neither ever shows up
    assert answers == [[], [], [], []]


def test_a_stopped_managed_instance_loses_its_connection(world):
    # GIVEN a registered managed instance
    ec2, instance_id = launch_in_target()
    ssm = pipeline_client("ssm", TARGET)
    poll(lambda: information(ssm), lambda found: bool(found))

    # WHEN it is stopped
    ec2.stop_instances(InstanceIds=[instance_id])

    # THEN SSM reports the connection lost
    assert [i["PingStatus"] for i in information(ssm)] == ["ConnectionLost"]


def test_instance_information_filters(world):
    # GIVEN two registered managed instances
    _, first = launch_in_target()
    _, second = launch_in_target()
    ssm = pipeline_client("ssm", TARGET)
    poll(lambda: information(ssm), lambda found: len(found) == 2)

    # WHEN the list is filtered by instance id in both filter styles, and by ping status
    by_new_style = information(ssm, Filters=[{"Key": "InstanceIds", "Values": [first]}])
    by_old_style = information(ssm, InstanceInformationFilterList=[{"key": "InstanceIds", "valueSet": [second]}])
    lost = information(ssm, Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}])

    # THEN each answer holds what was asked for; an unknown filter key is an error
    assert [i["InstanceId"] for i in by_new_style] == [first]
    assert [i["InstanceId"] for i in by_old_style] == [second]
    assert lost == []
    with pytest.raises(ClientError) as raised:
        information(ssm, Filters=[{"Key": "Nonsense", "Values": ["x"]}])
    assert code_of(raised) == "InvalidFilterKey"


def test_send_command_waits_for_the_instance_to_be_managed(world):
    # GIVEN a restored instance next to another instance in the target account
    _, instance_id = launch_in_target()
    launch_in_target(profile=None)
    ssm = pipeline_client("ssm", TARGET)
    install = {"DocumentName": "AWS-ConfigureAWSPackage",
               "Parameters": {"action": ["Install"], "name": ["AmazonCloudWatchAgent"]}}

    # WHEN a command is sent before the agent has checked in
    with pytest.raises(ClientError) as raised:
        ssm.send_command(InstanceIds=[instance_id], **install)

    # THEN SSM refuses it, naming the instance
    assert code_of(raised) == "InvalidInstanceId" and instance_id in raised.value.response["Error"]["Message"]

    # AND WHEN it is sent once the instance is managed, it goes to that instance only, and its invocation is
    # readable in the target account
    poll(lambda: information(ssm), lambda found: bool(found))
    command = ssm.send_command(InstanceIds=[instance_id], **install)["Command"]
    assert command["InstanceIds"] == [instance_id]
    world.clock.sleep(aws_rules.pacing.command_start_seconds + aws_rules.pacing.command_seconds)
    invocation = ssm.get_command_invocation(CommandId=command["CommandId"], InstanceId=instance_id)
    assert invocation["Status"] == "Success" and invocation["DocumentName"] == "AWS-ConfigureAWSPackage"


# --- the target role -----------------------------------------------------------------------------------------


def test_target_role_needs_the_external_id(world):
    sts = boto3.client("sts")

    # WHEN the target role is assumed with a wrong external id, and with none
    for external_id in ({"ExternalId": "guessed"}, {}):
        with pytest.raises(ClientError) as raised:
            sts.assume_role(RoleArn=TARGET_ROLE_ARN, RoleSessionName="mgn-cutover", **external_id)

        # THEN STS refuses with 403 AccessDenied
        assert code_of(raised) == "AccessDenied"
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # AND with the right one the credentials act in the target account
    identity = pipeline_client("sts", TARGET).get_caller_identity()
    assert identity["Account"] == TARGET


# --- installing ------------------------------------------------------------------------------------------------


def test_install_is_idempotent_and_uninstall_gives_moto_its_behaviour_back(aws):
    from moto.ec2.responses.amis import AmisResponse

    # GIVEN the rules installed twice
    aws_rules.install()
    patched = AmisResponse.describe_images
    aws_rules.install()
    assert AmisResponse.describe_images is patched and aws_rules.installed()

    # WHEN they are uninstalled twice
    aws_rules.uninstall()
    aws_rules.uninstall()

    # THEN moto's own behaviour is back: an image is available at once, with moto's single invented snapshot
    assert not aws_rules.installed() and AmisResponse.describe_images is not patched
    ec2 = boto3.client("ec2")
    image_id = ec2.create_image(InstanceId=launch(ec2, [("/dev/sda1", 8, None), ("/dev/sdb", 9, None)]),
                                Name="plain-moto")["ImageId"]
    described = image(ec2, image_id)
    assert described["State"] == "available" and len(described["BlockDeviceMappings"]) == 1


def test_asymmetric_keys_still_sign_with_their_key_pair_made_on_use(world):
    kms = boto3.client("kms")
    # GIVEN an RSA signing key, whose key pair the rules make only when it is used
    key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]

    # WHEN it signs and verifies a message
    signature = kms.sign(KeyId=key_id, Message=b"cutover", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
    verified = kms.verify(KeyId=key_id, Message=b"cutover", Signature=signature,
                          SigningAlgorithm="RSASSA_PSS_SHA_256")

    # THEN the signature holds, and the public key is the pair's
    assert verified["SignatureValid"] is True
    assert kms.get_public_key(KeyId=key_id)["PublicKey"]
