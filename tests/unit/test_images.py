"""Images of the cutover instance: create, check, copy under the sharing key, share, copy to the target."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from pipeline import clock as pipeline_clock
from pipeline import images, ledger, names
from pipeline.errors import ImageFailed, ImageNotShareable, TargetNotAllowed, WaitTimedOut
from sandbox import aws_rules
from tests.unit.support import (
    EXECUTION,
    OUTSIDE_ACCOUNT,
    SOURCE_SERVER_ID,
    TARGET_ACCOUNT,
    TARGET_ROLE_NAME,
    account_client,
    grants_on,
    images_named,
    launch_permissions,
    migration_client,
    poll,
    set_image_state,
    snapshot_ids_of,
    snapshot_keys_of,
    volume_permissions,
)

TARGET_KEY_ALIAS = "alias/mgn-cutover-target"


@pytest.fixture
def target_key(world, target_account) -> str:
    """The target account's own key, the one restored images are copied under."""
    return world.ensure_key(target_account, TARGET_KEY_ALIAS)


def image_name(cutover_instance: dict, stage: str) -> str:
    return names.image_name(SOURCE_SERVER_ID, cutover_instance["InstanceId"], stage)


# --- create -----------------------------------------------------------------------------------------------------------


def test_create_makes_the_image_under_its_deterministic_name(cutover_branch, cutover_instance, ec2, replication_key):
    # GIVEN the cutover instance MGN launched
    current = cutover_branch

    # WHEN the image is created
    result = images.create(current)

    # THEN one image of that name exists, tagged for the server, with a snapshot per disk under the volumes' key
    [image] = images_named(ec2, image_name(cutover_instance, "image"))
    assert result == {"imageId": image["ImageId"], "ready": False, "attempts": 0}
    tags = {tag["Key"]: tag["Value"] for tag in image["Tags"]}
    assert tags[names.SERVER_TAG] == SOURCE_SERVER_ID
    assert tags[names.EXECUTION_TAG] == EXECUTION
    assert tags[names.STAGE_TAG] == "image"
    assert len(snapshot_ids_of(ec2, image["ImageId"])) == 2
    assert snapshot_keys_of(ec2, image["ImageId"]) == {replication_key}
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["image"] == image["ImageId"]


def test_create_twice_leaves_one_image(cutover_branch, cutover_instance, ec2):
    # GIVEN the image was created once (the Lambda timed out after the call, say)
    current = cutover_branch
    first = images.create(current)

    # WHEN the step runs again
    second = images.create(current)

    # THEN it finds the first image instead of creating another
    assert second["imageId"] == first["imageId"]
    found = images_named(ec2, image_name(cutover_instance, "image"))
    assert [image["ImageId"] for image in found] == [first["imageId"]]


def test_create_ignores_a_failed_image_of_the_same_name(cutover_branch, cutover_instance, ec2):
    # GIVEN an earlier image of that name failed
    current = cutover_branch
    failed = images.create(current)["imageId"]
    set_image_state("123456789012", failed, "failed")
    ec2.deregister_image(ImageId=failed)

    # WHEN the image is created again
    result = images.create(current)

    # THEN a new image is made
    assert result["imageId"] != failed
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["image"] == result["imageId"]


# --- check ------------------------------------------------------------------------------------------------------------


def test_check_reports_pending_then_available(cutover_branch, world):
    # GIVEN an image whose snapshots take a while (the instance's 8 + 20 GiB at 100 MiB/s: 287 s)
    aws_rules.pacing.snapshot_mib_per_second = 100
    current = cutover_branch
    current["image"] = images.create(current)

    # WHEN it is checked at once, and again after the wait the check asks for and 260 s more
    first = images.check(current, "image")
    current["image"] = first
    world.clock.sleep(first["nextWaitSeconds"] + 260)
    second = images.check(current, "image")

    # THEN the first check counts a wait of the request's shortest interval, the second finds it ready
    assert (first["ready"], first["attempts"], first["imageState"]) == (False, 1, "pending")
    assert first["nextWaitSeconds"] == current["options"]["pollIntervalSeconds"]
    assert (second["ready"], second["attempts"], second["imageState"]) == (True, 0, "available")


def test_check_of_a_failed_image_raises_image_failed(cutover_branch):
    # GIVEN the image ended failed
    current = cutover_branch
    current["image"] = images.create(current)
    set_image_state("123456789012", current["image"]["imageId"], "failed")

    # WHEN / THEN the check raises ImageFailed naming the image and its state
    with pytest.raises(ImageFailed, match=rf"image {current['image']['imageId']} is failed"):
        images.check(current, "image")


def test_check_of_a_vanished_image_raises_image_failed(cutover_branch, cutover_instance, ec2):
    # GIVEN someone deregistered the image while the pipeline waited
    current = cutover_branch
    current["image"] = images.create(current)
    ec2.deregister_image(ImageId=current["image"]["imageId"])

    # WHEN / THEN the check says it no longer exists
    with pytest.raises(ImageFailed, match="no longer exists"):
        images.check(current, "image")


def test_check_times_out_after_max_poll_attempts(cutover_branch):
    # GIVEN an image that stays pending longer than the request allows (the clock does not move)
    aws_rules.pacing.snapshot_mib_per_second = 1
    current = cutover_branch
    current["options"]["maxPollAttempts"] = 3
    current["image"] = images.create(current)

    # WHEN it is checked until the bound
    for _ in range(2):
        current["image"] = images.check(current, "image")

    # THEN the third check gives up
    with pytest.raises(WaitTimedOut):
        images.check(current, "image")


# --- copy for sharing -------------------------------------------------------------------------------------------------


def test_image_under_another_key_is_copied_under_the_sharing_key(created, sharing_key, ec2, cutover_instance):
    # GIVEN the cutover image is under MGN's replication key
    # WHEN it is copied for sharing
    result = images.copy_for_sharing(created)

    # THEN a copy of the sharing-copy name exists, every snapshot under the sharing key, and the ledger knows it
    [copy] = images_named(ec2, image_name(cutover_instance, "sharing-copy"))
    assert result == {"imageId": copy["ImageId"], "copied": True, "ready": False, "attempts": 0,
                      "waitStartedAt": result["waitStartedAt"], "nextWaitSeconds": 30}
    assert copy["ImageId"] != created["image"]["imageId"]
    assert snapshot_keys_of(ec2, copy["ImageId"]) == {sharing_key}
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["sharedImage"] == copy["ImageId"]


def test_copy_for_sharing_twice_makes_one_copy(created, sharing_key, ec2, cutover_instance):
    # GIVEN the copy was started once
    first = images.copy_for_sharing(created)

    # WHEN the step runs again
    second = images.copy_for_sharing(created)

    # THEN it finds the same copy
    assert second["imageId"] == first["imageId"]
    assert len(images_named(ec2, image_name(cutover_instance, "sharing-copy"))) == 1


def test_image_already_under_the_sharing_key_is_not_copied(start_branch, sharing_key, ec2):
    # GIVEN MGN replicates under the sharing key itself
    current = start_branch(sharing_key)
    current["image"] = images.create(current)
    poll(images.check, current, "image", "image")

    # WHEN it is "copied" for sharing
    result = images.copy_for_sharing(current)

    # THEN the cutover image itself is shared, ready at once, and no copy exists
    assert result == {"imageId": current["image"]["imageId"], "copied": False, "ready": True, "attempts": 0}
    cutover_instance_id = current["cutover"]["cutoverInstanceId"]
    assert images_named(ec2, names.image_name(SOURCE_SERVER_ID, cutover_instance_id, "sharing-copy")) == []


def test_image_under_the_aws_managed_key_is_copied(start_branch, sharing_key, ec2):
    # GIVEN MGN replicated under the account's default EBS key, which cannot be shared
    current = start_branch(None)
    current["image"] = images.create(current)
    poll(images.check, current, "image", "image")

    # WHEN it is copied for sharing
    result = images.copy_for_sharing(current)

    # THEN the copy is under the sharing key
    assert result["copied"] is True
    assert snapshot_keys_of(ec2, result["imageId"]) == {sharing_key}


# --- share ------------------------------------------------------------------------------------------------------------


def test_share_gives_the_target_account_the_image_snapshots_and_key(under_sharing_key, sharing_key, ec2):
    # GIVEN the sharing copy is available
    copy_id = under_sharing_key["sharedImage"]["imageId"]

    # WHEN it is shared
    result = images.share(under_sharing_key)

    # THEN the target account may launch the image, create volumes from each snapshot, and use the key through a grant
    snapshots = snapshot_ids_of(ec2, copy_id)
    assert launch_permissions(ec2, copy_id) == [TARGET_ACCOUNT]
    assert all(volume_permissions(ec2, snapshot) == [TARGET_ACCOUNT] for snapshot in snapshots)
    [grant] = grants_on(sharing_key)
    assert grant["GranteePrincipal"] == f"arn:aws:iam::{TARGET_ACCOUNT}:role/{TARGET_ROLE_NAME}"
    assert set(grant["Operations"]) == set(images.TARGET_GRANT_OPERATIONS)
    assert result == {
        "accountId": TARGET_ACCOUNT,
        "imageId": copy_id,
        "snapshotIds": snapshots,
        "grantId": grant["GrantId"],
    }
    artifacts = ledger.read(SOURCE_SERVER_ID)["artifacts"]
    assert (artifacts["grant"], artifacts["sharedWith"]) == (grant["GrantId"], TARGET_ACCOUNT)


def test_shared_image_is_visible_to_the_target_account(shared, target_ec2):
    # GIVEN the image is shared
    # WHEN the target account looks for it by id
    [image] = target_ec2.describe_images(ImageIds=[shared["share"]["imageId"]])["Images"]

    # THEN it sees it, but not the migration account's tags
    assert image["OwnerId"] == "123456789012"
    assert "Tags" not in image


@pytest.mark.parametrize("account", [OUTSIDE_ACCOUNT, "123456789012"], ids=["outsider", "migration account"])
def test_share_outside_the_allowlist_is_refused_with_no_side_effect(under_sharing_key, sharing_key, ec2, account):
    # GIVEN a state naming an account outside the allowlist (the input was changed after validation, say)
    under_sharing_key["server"]["target"]["accountId"] = account
    copy_id = under_sharing_key["sharedImage"]["imageId"]

    # WHEN the image is shared
    with pytest.raises(TargetNotAllowed) as refused:
        images.share(under_sharing_key)

    # THEN nothing was given to anyone, and the ledger records no sharing
    assert refused.value.account_id == account
    assert launch_permissions(ec2, copy_id) == []
    assert all(volume_permissions(ec2, snapshot) == [] for snapshot in snapshot_ids_of(ec2, copy_id))
    assert grants_on(sharing_key) == []
    assert {"grant", "sharedWith"}.isdisjoint(ledger.read(SOURCE_SERVER_ID)["artifacts"])


def test_share_of_an_image_not_under_the_sharing_key_is_refused(created, sharing_key, target_account, ec2):
    # GIVEN the state points the share at the cutover image, under the replication key
    created["sharedImage"] = {"imageId": created["image"]["imageId"], "ready": True}

    # WHEN it is shared
    with pytest.raises(ImageNotShareable):
        images.share(created)

    # THEN no permission and no grant was given
    assert launch_permissions(ec2, created["image"]["imageId"]) == []
    assert grants_on(sharing_key) == []


# --- copy to target ---------------------------------------------------------------------------------------------------


def test_copy_to_target_makes_the_targets_own_image_under_its_key(shared, target_key, target_ec2, cutover_instance):
    # GIVEN the image is shared, and the request names the target's own key
    shared["server"]["target"]["kmsKeyId"] = TARGET_KEY_ALIAS

    # WHEN it is copied into the target account
    result = images.copy_to_target(shared)
    poll(images.check, shared | {"targetImage": result}, "targetImage", "targetImage")

    # THEN the target account owns an image of the target-copy name, under its own key
    [image] = images_named(target_ec2, image_name(cutover_instance, "target-copy"))
    assert result == {"imageId": image["ImageId"], "accountId": TARGET_ACCOUNT, "ready": False, "attempts": 0,
                      "waitStartedAt": result["waitStartedAt"], "nextWaitSeconds": 30}
    assert image["OwnerId"] == TARGET_ACCOUNT
    assert snapshot_keys_of(target_ec2, image["ImageId"]) == {target_key}
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["targetImage"] == image["ImageId"]


def test_the_target_copy_is_timed_from_its_start_though_first_checked_later(shared, world, monkeypatch):
    # GIVEN a target copy started (28 GiB at 10 MiB/s: 48 minutes), its first check coming only after 20 minutes
    # of agent steps, the pipeline reading the world's clock
    monkeypatch.setattr(pipeline_clock, "_source", world.clock.now)
    aws_rules.pacing.copy_mib_per_second = 10
    started = images.copy_to_target(shared)
    world.clock.sleep(1200)

    # WHEN it is checked
    checked = images.check(shared | {"targetImage": started}, "targetImage")

    # THEN the wait counts from the copy's start: the next wait is 5% of the 20 minutes, not the shortest one
    assert checked["waitStartedAt"] == started["waitStartedAt"]
    assert checked["nextWaitSeconds"] == 60


def test_copy_to_target_twice_makes_one_image(shared, target_ec2, cutover_instance):
    # GIVEN the copy was started / WHEN the step runs again / THEN there is still one copy
    first = images.copy_to_target(shared)
    second = images.copy_to_target(shared)
    assert second["imageId"] == first["imageId"]
    assert len(images_named(target_ec2, image_name(cutover_instance, "target-copy"))) == 1


def test_copy_to_target_without_a_key_uses_the_targets_default_key(shared, target_ec2):
    # GIVEN no target key in the request
    # WHEN the image is copied
    result = images.copy_to_target(shared)

    # THEN the copy is encrypted, under a key of the target account, not the sharing key
    [key] = snapshot_keys_of(target_ec2, result["imageId"])
    assert key.split(":")[4] == TARGET_ACCOUNT


def test_copy_for_sharing_waits_for_a_slot_when_ec2_runs_its_limit_of_copies(created, sharing_key, ec2,
                                                                             cutover_instance):
    # GIVEN the migration account already runs as many copies as EC2 allows (a limit of none left)
    aws_rules.limits.concurrent_image_copies = 0

    # WHEN the copy step runs twice
    first = images.copy_for_sharing(created)
    created["sharedImage"] = first
    second = images.copy_for_sharing(created)

    # THEN it answers "waiting for a slot" each time, counting the wait, and created nothing to take back
    assert (first["waitingForSlot"], first["imageId"], first["ready"], first["attempts"]) == (True, None, False, 1)
    assert (second["waitingForSlot"], second["attempts"]) == (True, 2)
    assert images_named(ec2, image_name(cutover_instance, "sharing-copy")) == []
    assert "sharedImage" not in ledger.read(SOURCE_SERVER_ID)["artifacts"]

    # AND once a slot is free the same step starts the copy, the wait forgotten
    aws_rules.limits.concurrent_image_copies = 50
    started = images.copy_for_sharing(created)
    [copy] = images_named(ec2, image_name(cutover_instance, "sharing-copy"))
    assert started["imageId"] == copy["ImageId"] and started["attempts"] == 0
    assert not started.get("waitingForSlot")


def test_waiting_for_a_copy_slot_is_bounded(created, sharing_key):
    # GIVEN no copy slot ever frees up, and a bound of three checks
    aws_rules.limits.concurrent_image_copies = 0
    created["options"]["maxPollAttempts"] = 3

    # WHEN the step keeps waiting / THEN the wait ends in WaitTimedOut, as every wait does
    created["sharedImage"] = images.copy_for_sharing(created)
    created["sharedImage"] = images.copy_for_sharing(created)
    with pytest.raises(WaitTimedOut):
        images.copy_for_sharing(created)


def test_copy_to_target_waits_for_a_slot_in_the_target_account(shared, target_ec2):
    # GIVEN the target account runs as many copies as EC2 allows
    aws_rules.limits.concurrent_image_copies = 0

    # WHEN the target copy step runs
    result = images.copy_to_target(shared)

    # THEN it waits for a slot, and the target account holds no image yet
    assert (result["waitingForSlot"], result["imageId"], result["accountId"]) == (True, None, TARGET_ACCOUNT)
    assert target_ec2.describe_images(Owners=["self"])["Images"] == []


def test_copy_to_target_outside_the_allowlist_is_refused(shared, monkeypatch):
    # GIVEN the target account was taken off the allowlist after sharing
    monkeypatch.setenv("TARGET_ACCOUNT_ALLOWLIST", "333333333333")

    # WHEN / THEN nothing is copied into it
    with pytest.raises(TargetNotAllowed):
        images.copy_to_target(shared)
    assert "targetImage" not in ledger.read(SOURCE_SERVER_ID)["artifacts"]


def test_copy_to_target_of_an_image_not_shared_fails(under_sharing_key, target_account):
    # GIVEN the share step never ran: the target cannot see the image
    under_sharing_key["share"] = {"imageId": under_sharing_key["sharedImage"]["imageId"]}

    # WHEN / THEN the copy is refused by EC2
    with pytest.raises(ClientError) as refused:
        images.copy_to_target(under_sharing_key)
    assert refused.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"


def test_copy_to_target_fails_later_when_the_grant_is_gone(shared, sharing_key, target_account):
    # GIVEN the grant on the sharing key was revoked after sharing
    migration_client("kms").revoke_grant(KeyId=sharing_key, GrantId=shared["share"]["grantId"])

    # WHEN the copy is started and checked
    shared["targetImage"] = images.copy_to_target(shared)

    # THEN the call is accepted, but the copy ends failed, with the key named
    with pytest.raises(ImageFailed, match="is failed: Given key ID is not accessible"):
        poll(images.check, shared, "targetImage", "targetImage")


def test_the_grant_goes_as_soon_as_the_target_copy_is_available(shared, sharing_key):
    # GIVEN the target account copies the shared image
    assert len(grants_on(sharing_key)) == 1
    shared["targetImage"] = images.copy_to_target(shared)

    # WHEN the check finds the copy available
    poll(images.check, shared, "targetImage", "targetImage")

    # THEN the target role may no longer use the sharing key
    assert grants_on(sharing_key) == []


def test_share_twice_gives_one_grant(shared, sharing_key):
    # GIVEN the image was shared once (the answer was lost, say)
    # WHEN the step runs again
    again = images.share(shared)

    # THEN the earlier grant is found rather than a second one given
    assert again["grantId"] == shared["share"]["grantId"]
    assert [grant["GrantId"] for grant in grants_on(sharing_key)] == [again["grantId"]]


def test_revoking_by_name_also_takes_a_duplicate_grant(shared, sharing_key):
    # GIVEN a second grant of the same name (a create sent twice whose first answer was lost)
    name = names.grant_name(SOURCE_SERVER_ID, TARGET_ACCOUNT)
    migration_client("kms").create_grant(
        KeyId=sharing_key,
        GranteePrincipal=f"arn:aws:iam::{TARGET_ACCOUNT}:role/{TARGET_ROLE_NAME}",
        Operations=["Decrypt"],
        Name=name,
    )

    # WHEN the recorded grant is revoked with its name
    images.revoke_grant(shared["share"]["grantId"], name)

    # THEN no grant of that name is left
    assert grants_on(sharing_key) == []


def test_snapshots_are_tagged_when_the_image_is_created(created, ec2):
    # GIVEN the cutover image / WHEN its snapshots are listed / THEN each carries the managed tags
    snapshots = ec2.describe_snapshots(SnapshotIds=snapshot_ids_of(ec2, created["image"]["imageId"]))["Snapshots"]
    for snapshot in snapshots:
        tags = {tag["Key"]: tag["Value"] for tag in snapshot["Tags"]}
        assert (tags[names.MANAGED_TAG], tags[names.SERVER_TAG]) == ("true", SOURCE_SERVER_ID)
