"""The restored instance in the target account: launch it with the requested placement and
verify it before anything passes the point of no return."""

from __future__ import annotations

from botocore.exceptions import ClientError

from pipeline import aws, config, ledger, names, state
from pipeline.errors import RestoredInstanceFailed
from pipeline.observability import logger

RESTORED = "restored-instance"


def cutover_instance(instance_id: str) -> dict:
    reservations = aws.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservations[0]["Instances"][0]


def launch(current: dict) -> dict:
    """Launch the restored instance from the shared image (its volumes re-encrypted under the target's key)
    or from the target's own copy, as `options.restoreFrom` says; a retry finds the first launch."""
    account = state.target_account(current)
    placement = state.target(current)
    server_id = state.source_server_id(current)
    from_shared = state.restore_from(current) == state.FROM_SHARED_IMAGE
    image_id = state.slot(current, "share" if from_shared else "targetImage")["imageId"]
    ec2 = aws.target_client("ec2", account)
    token = names.client_token(server_id, image_id, "launch")

    existing = _find(ec2, server_id, token)
    if existing:
        instance_id = existing["InstanceId"]
        logger.info("Restored instance already launched", restored_instance_id=instance_id)
    else:
        request = _run_request(current, image_id, token)
        if from_shared:
            request["BlockDeviceMappings"] = reencrypting_mappings(_image(ec2, image_id), _target_key(ec2, placement))
        instance_id = ec2.run_instances(**request)["Instances"][0]["InstanceId"]
        logger.info("Restored instance launched", restored_instance_id=instance_id, target_account=account,
                    image_id=image_id, from_shared_image=from_shared)
    ledger.record(server_id, state.execution(current), "restoredInstance", instance_id)
    return {"instanceId": instance_id, "subnetId": placement["subnetId"], "ready": False, "attempts": 0}


def _run_request(current: dict, image_id: str, token: str) -> dict:
    placement = state.target(current)
    server_id = state.source_server_id(current)
    instance_type = placement.get("instanceType") or _cutover_instance_type(current)
    tags = names.tags(server_id, state.execution(current), RESTORED, {"mgn-cutover:token": token})
    tags += [{"Key": key, "Value": value} for key, value in placement.get("tags", {}).items()]
    request = {
        "ImageId": image_id,
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": placement["subnetId"],
        "SecurityGroupIds": placement["securityGroupIds"],
        "ClientToken": token,
        # IMDSv2 only: a restored server should not come up with the older metadata service.
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }
    if placement.get("privateIpAddress"):
        request["PrivateIpAddress"] = placement["privateIpAddress"]
    # Without a profile the restored instance never registers with SSM and the agent steps
    # could only time out, so the target stack's profile is the default.
    profile = placement.get("instanceProfile") or config.default_instance_profile()
    if profile:
        request["IamInstanceProfile"] = {"Name": profile}
    return request


def reencrypting_mappings(image: dict, key_id: str) -> list[dict]:
    """The image's own EBS mappings (device, size, type, delete-on-termination), each volume re-encrypted
    under `key_id`: a volume made from the shared image must never stay under the sharing key, which the
    target loses at clean up, nor be left unencrypted."""
    mappings = []
    for mapping in image.get("BlockDeviceMappings", []):
        ebs = mapping.get("Ebs")
        if not ebs:
            # Instance store and NoDevice entries carry no data and no key: the image's own entry stands.
            continue
        volume = {"Encrypted": True, "KmsKeyId": key_id}
        for field in ("VolumeSize", "VolumeType", "DeleteOnTermination"):
            if ebs.get(field) is not None:
                volume[field] = ebs[field]
        # EC2 refuses Iops for a type without provisioned IOPS, and Throughput for any type but gp3.
        if ebs.get("Iops") is not None and ebs.get("VolumeType") in ("io1", "io2", "gp3"):
            volume["Iops"] = ebs["Iops"]
        if ebs.get("Throughput") is not None and ebs.get("VolumeType") == "gp3":
            volume["Throughput"] = ebs["Throughput"]
        mappings.append({"DeviceName": mapping["DeviceName"], "Ebs": volume})
    return mappings


def _image(ec2, image_id: str) -> dict:
    images = ec2.describe_images(ImageIds=[image_id])["Images"]
    if not images:
        raise RestoredInstanceFailed(f"shared image {image_id} is not visible to the target account")
    return images[0]


def _target_key(ec2, placement: dict) -> str:
    """The request's key, else the target account's default EBS key, named explicitly: without a KmsKeyId
    EBS could keep a shared snapshot's own key for the volume."""
    return placement.get("kmsKeyId") or ec2.get_ebs_default_kms_key_id()["KmsKeyId"]


def _cutover_instance_type(current: dict) -> str:
    return cutover_instance(state.slot(current, "cutover")["cutoverInstanceId"])["InstanceType"]


def _find(ec2, server_id: str, token: str) -> dict | None:
    reservations = ec2.describe_instances(
        Filters=[
            {"Name": f"tag:{names.SERVER_TAG}", "Values": [server_id]},
            {"Name": "tag:mgn-cutover:token", "Values": [token]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )["Reservations"]
    instances = [instance for reservation in reservations for instance in reservation["Instances"]]
    return instances[0] if instances else None


def check(current: dict) -> dict:
    """One check of the restored instance: ready when running with both status checks ok."""
    account = state.target_account(current)
    instance_id = state.slot(current, "restored")["instanceId"]
    ec2 = aws.target_client("ec2", account)
    statuses = ec2.describe_instance_status(InstanceIds=[instance_id], IncludeAllInstances=True)["InstanceStatuses"]
    if not statuses:
        raise RestoredInstanceFailed(f"restored instance {instance_id} no longer exists")
    status = statuses[0]
    instance_state = status["InstanceState"]["Name"]
    if instance_state in ("shutting-down", "terminated", "stopping", "stopped"):
        raise RestoredInstanceFailed(f"restored instance {instance_id} is {instance_state}")

    checks = (status.get("InstanceStatus", {}).get("Status"), status.get("SystemStatus", {}).get("Status"))
    if "impaired" in checks:
        raise RestoredInstanceFailed(f"restored instance {instance_id} failed its status checks {checks}")
    ready = instance_state == "running" and checks == ("ok", "ok")
    if not ready:
        return state.poll_result(current, "restored", False, instanceState=instance_state)

    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    logger.info("Restored instance verified", restored_instance_id=instance_id)
    return state.poll_result(current, "restored", True, privateIpAddress=instance.get("PrivateIpAddress"))


def terminate(account: str, instance_id: str) -> list[str]:
    ec2 = aws.target_client("ec2", account)
    try:
        ec2.terminate_instances(InstanceIds=[instance_id])
    except ClientError as err:
        if err.response["Error"]["Code"] != "InvalidInstanceID.NotFound":
            raise
        return []
    return [f"restored instance {instance_id}"]
