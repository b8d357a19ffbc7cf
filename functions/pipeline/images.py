"""Images of a cutover instance: create, copy under the sharing key, share, copy into the
target account, and remove.

Every create is preceded by a look-up by its deterministic name, and every copy carries a
ClientToken, so a step that runs twice leaves one image.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from pipeline import aws, config, ledger, names, state
from pipeline.errors import ImageFailed, ImageNotShareable, TargetNotAllowed
from pipeline.observability import logger

# Grant operations the target account needs on the sharing key to copy the shared image
# under its own key (EBS decrypts the source snapshots and re-encrypts them), and no more: no
# Encrypt, no ReEncryptTo (nothing is ever encrypted under the sharing key in the target), no
# RetireGrant or grant management beyond the CreateGrant EBS makes for itself. The grant is
# revoked as soon as the target's copy is available.
# NOTE: no EncryptionContextSubset constraint: EBS's context names each snapshot, and one grant
# constraint cannot list several snapshots.
TARGET_GRANT_OPERATIONS = ["Decrypt", "DescribeKey", "ReEncryptFrom", "GenerateDataKeyWithoutPlaintext", "CreateGrant"]


def find_by_name(ec2, name: str) -> dict | None:
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
    usable = [image for image in images if image["State"] not in ("deregistered", "failed")]
    return usable[0] if usable else None


def describe(ec2, image_id: str) -> dict:
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as err:
        if err.response["Error"]["Code"] in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"):
            raise ImageFailed(f"image {image_id} no longer exists") from None
        raise
    if not images:
        raise ImageFailed(f"image {image_id} no longer exists")
    return images[0]


def snapshot_ids(image: dict) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]


def snapshot_keys(ec2, image: dict) -> set[str | None]:
    """The KMS key of every snapshot of the image (None for an unencrypted one)."""
    ids = snapshot_ids(image)
    if not ids:
        return set()
    snapshots = ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]
    return {snapshot.get("KmsKeyId") if snapshot.get("Encrypted") else None for snapshot in snapshots}


def create(current: dict) -> dict:
    """Create the image of the cutover instance (or find the one an earlier attempt made)."""
    ec2 = aws.client("ec2")
    server_id = state.source_server_id(current)
    instance_id = state.slot(current, "cutover")["cutoverInstanceId"]
    name = names.image_name(server_id, instance_id, names.CUTOVER_IMAGE)

    image = find_by_name(ec2, name)
    if image:
        image_id = image["ImageId"]
        logger.info("Image already created", image_id=image_id)
    else:
        image_id = ec2.create_image(
            InstanceId=instance_id,
            Name=name,
            Description=f"Cutover image of MGN source server {server_id}",
            NoReboot=bool(state.option(current, "noReboot")),
            TagSpecifications=names.image_tag_specifications(server_id, state.execution(current), names.CUTOVER_IMAGE),
        )["ImageId"]
        logger.info("Image creation started", image_id=image_id, cutover_instance_id=instance_id)
    ledger.record(server_id, state.execution(current), "image", image_id)
    return {"imageId": image_id, "ready": False, "attempts": 0}


def check(current: dict, slot_name: str) -> dict:
    """One check of an image being created or copied, in the account that owns it."""
    image_id = state.slot(current, slot_name)["imageId"]
    ec2 = _ec2_for(current, slot_name)
    image = describe(ec2, image_id)
    if image["State"] in ("failed", "deregistered", "invalid", "error"):
        reason = image.get("StateReason", {}).get("Message", "no reason given")
        raise ImageFailed(f"image {image_id} is {image['State']}: {reason}")
    ready = image["State"] == "available"
    if ready:
        logger.info("Image available", image_id=image_id, slot=slot_name)
        if slot_name == "targetImage":
            _revoke_target_grant(current)
    return state.poll_result(current, slot_name, ready, imageState=image["State"])


def _revoke_target_grant(current: dict) -> None:
    """The target's copy is complete and under the target's own key: nothing needs the sharing
    key any more, so the target role's grant on it goes now rather than at clean up."""
    grant_id = state.slot(current, "share").get("grantId")
    if grant_id:
        revoked = revoke_grant(grant_id)
        logger.info("Sharing key grant revoked", grant_id=grant_id, already_gone=not revoked)


def _ec2_for(current: dict, slot_name: str):
    if slot_name == "targetImage":
        return aws.target_client("ec2", state.target_account(current))
    return aws.client("ec2")


def copy_for_sharing(current: dict) -> dict:
    """Copy the image under the sharing key, unless all its snapshots already are under it.

    MGN encrypts cutover volumes with the key of its replication settings; when that key is
    the sharing key, the image can be shared as it is and one full copy is saved.
    """
    ec2 = aws.client("ec2")
    server_id = state.source_server_id(current)
    sharing_key = config.sharing_key_arn()
    image = describe(ec2, state.slot(current, "image")["imageId"])

    if snapshot_keys(ec2, image) == {sharing_key}:
        logger.info("Image already under the sharing key; no copy needed", image_id=image["ImageId"])
        # Recorded all the same: cleanup and rollback unshare what the ledger names as shared.
        ledger.record(server_id, state.execution(current), "sharedImage", image["ImageId"])
        return {"imageId": image["ImageId"], "copied": False, "ready": True, "attempts": 0}

    instance_id = state.slot(current, "cutover")["cutoverInstanceId"]
    name = names.image_name(server_id, instance_id, names.SHARING_COPY)
    existing = find_by_name(ec2, name)
    if existing:
        copy_id = existing["ImageId"]
    else:
        copy_id = start_copy(ec2, "migration account", {
            "SourceImageId": image["ImageId"],
            "SourceRegion": aws.region(),
            "Name": name,
            "Description": f"Cutover image of MGN source server {server_id}, under the sharing key",
            "Encrypted": True,
            "KmsKeyId": sharing_key,
            "ClientToken": names.client_token(image["ImageId"], sharing_key),
            "TagSpecifications": names.image_tag_specifications(server_id, state.execution(current),
                                                                 names.SHARING_COPY),
        })
        if copy_id is None:
            return waiting_for_slot(current, "sharedImage")
        logger.info("Copy under the sharing key started", image_id=copy_id, source_image_id=image["ImageId"])
    ledger.record(server_id, state.execution(current), "sharedImage", copy_id)
    # The state machine waits before the first check of this copy: the wait starts now.
    return {"imageId": copy_id, "copied": True, "ready": False, "attempts": 0, **state.first_wait(current)}


def start_copy(ec2, where: str, request: dict) -> str | None:
    """CopyImage; None when the destination account already runs as many copies as EC2 allows in the
    region (about 50; EC2 answers ResourceLimitExceeded). Nothing was created then, so nothing is held
    that a failure or a rollback would have to give back."""
    try:
        return ec2.copy_image(**request)["ImageId"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceLimitExceeded":
            raise
        logger.info("Concurrent copy limit reached; waiting for a slot", destination=where,
                    reason=err.response["Error"].get("Message"))
        return None


def waiting_for_slot(current: dict, slot_name: str, **detail) -> dict:
    """The copy step's answer while EC2 has no free copy slot: the state machine waits and runs the step again.

    A wave larger than the limit thus waits rather than fails; the wait is bounded like every poll loop
    (maxPollAttempts checks, maxWaitSeconds), and ends in WaitTimedOut only if no slot frees up in that time.
    """
    return state.poll_result(current, slot_name, False, imageId=None, waitingForSlot=True, **detail)


def share(current: dict) -> dict:
    """Share the image, its snapshots and the sharing key with the target account's role."""
    account = state.target_account(current)
    if account not in config.target_account_allowlist():
        raise TargetNotAllowed(account)

    ec2 = aws.client("ec2")
    server_id = state.source_server_id(current)
    sharing_key = config.sharing_key_arn()
    image = describe(ec2, state.slot(current, "sharedImage")["imageId"])
    keys = snapshot_keys(ec2, image)
    if keys != {sharing_key}:
        raise ImageNotShareable(
            f"image {image['ImageId']} is not wholly under the sharing key (keys: {sorted(map(str, keys))})"
        )

    grant_id = _grant(sharing_key, account, names.grant_name(server_id, account))
    ledger.record(server_id, state.execution(current), "grant", grant_id)
    # The grant goes first: once the launch permission exists the target could start a copy,
    # and a copy that cannot use the key fails late instead of at once.
    # Recorded before the permission is given, so a crash in between still leaves rollback
    # knowing what to take back.
    ledger.record(server_id, state.execution(current), "sharedWith", account)
    ec2.modify_image_attribute(ImageId=image["ImageId"], LaunchPermission={"Add": [{"UserId": account}]})
    snapshots = snapshot_ids(image)
    for snapshot_id in snapshots:
        ec2.modify_snapshot_attribute(
            SnapshotId=snapshot_id, Attribute="createVolumePermission", OperationType="add", UserIds=[account]
        )
    logger.info("Image shared with target account", image_id=image["ImageId"], target_account=account)
    return {"accountId": account, "imageId": image["ImageId"], "snapshotIds": snapshots, "grantId": grant_id}


def _grant(sharing_key: str, account: str, name: str) -> str:
    """The target role's grant on the sharing key: the one an earlier attempt made, else a new one.

    KMS treats a repeated CreateGrant with the same name and parameters as the same grant, but
    only within its retry window; looking it up first keeps a late retry from adding a second.
    """
    kms = aws.client("kms")
    grantee = aws.target_role_arn(account)
    for page in kms.get_paginator("list_grants").paginate(KeyId=sharing_key):
        for grant in page.get("Grants", []):
            if grant.get("Name") == name and grant.get("GranteePrincipal") == grantee:
                logger.info("Grant already given", grant_id=grant["GrantId"])
                return grant["GrantId"]
    return kms.create_grant(KeyId=sharing_key, GranteePrincipal=grantee, Operations=TARGET_GRANT_OPERATIONS,
                            Name=name)["GrantId"]


def copy_to_target(current: dict) -> dict:
    """In the target account, copy the shared image under the target's own key."""
    account = state.target_account(current)
    if account not in config.target_account_allowlist():
        raise TargetNotAllowed(account)

    ec2 = aws.target_client("ec2", account)
    server_id = state.source_server_id(current)
    shared_id = state.slot(current, "share")["imageId"]
    instance_id = state.slot(current, "cutover")["cutoverInstanceId"]
    name = names.image_name(server_id, instance_id, names.TARGET_COPY)
    target_key = state.target(current).get("kmsKeyId")

    existing = find_by_name(ec2, name)
    if existing:
        copy_id = existing["ImageId"]
    else:
        request = {
            "SourceImageId": shared_id,
            "SourceRegion": aws.region(),
            "Name": name,
            "Description": f"Restored image of MGN source server {server_id}",
            "Encrypted": True,
            "ClientToken": names.client_token(shared_id, account, target_key or "default"),
            "TagSpecifications": names.image_tag_specifications(server_id, state.execution(current), names.TARGET_COPY),
        }
        if target_key:
            request["KmsKeyId"] = target_key
        # Without a key, EBS uses the target account's default EBS key: still the target's own.
        copy_id = start_copy(ec2, f"target account {account}", request)
        if copy_id is None:
            # Restoring from the shared image, the launch does not wait for this: the state machine starts the
            # copy again after the agent steps.
            return waiting_for_slot(current, "targetImage", accountId=account)
        logger.info("Copy into the target account started", image_id=copy_id, target_account=account)
    ledger.record(server_id, state.execution(current), "targetImage", copy_id)
    # The copy's wait starts now, even when its first check comes only after the agent steps.
    return {"imageId": copy_id, "accountId": account, "ready": False, "attempts": 0, **state.first_wait(current)}


def unshare(image_id: str, account: str) -> list[str]:
    """Take back the launch and create-volume permissions given to `account`."""
    ec2 = aws.client("ec2")
    done: list[str] = []
    try:
        image = describe(ec2, image_id)
    except ImageFailed:
        return done
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Remove": [{"UserId": account}]})
    done.append(f"launch permission of {image_id} for {account}")
    for snapshot_id in snapshot_ids(image):
        ec2.modify_snapshot_attribute(
            SnapshotId=snapshot_id, Attribute="createVolumePermission", OperationType="remove", UserIds=[account]
        )
        done.append(f"create-volume permission of {snapshot_id} for {account}")
    return done


def remove(ec2, image_id: str) -> list[str]:
    """Deregister an image and delete its snapshots; an image already gone is not an error."""
    try:
        image = describe(ec2, image_id)
    except ImageFailed:
        return []
    snapshots = snapshot_ids(image)
    # One call for the image and its snapshots: deleting them one by one after the image is gone
    # would leave a snapshot nobody can find again if a delete fails and the step is retried.
    ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    return [f"image {image_id}"] + [f"snapshot {snapshot_id}" for snapshot_id in snapshots]


def revoke_grant(grant_id: str, name: str | None = None) -> list[str]:
    """Revoke the grant, and any other grant of the same name (a create whose answer was lost
    and was sent again may have given a second one)."""
    kms = aws.client("kms")
    ids = [grant_id]
    if name:
        for page in kms.get_paginator("list_grants").paginate(KeyId=config.sharing_key_arn()):
            ids += [grant["GrantId"] for grant in page.get("Grants", []) if grant.get("Name") == name]
    revoked = []
    for each in dict.fromkeys(ids):
        try:
            kms.revoke_grant(KeyId=config.sharing_key_arn(), GrantId=each)
        except ClientError as err:
            if err.response["Error"]["Code"] not in ("NotFoundException", "InvalidGrantIdException"):
                raise
            continue
        revoked.append(f"grant {each}")
    return revoked
