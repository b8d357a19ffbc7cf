"""Names and helpers the unit tests share: the accounts of the moto world, the per-server state
the state machine hands each step, and ways to look at (or bend) moto's backends."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import boto3
from moto.ec2.models import ec2_backends

from pipeline.request import parse_request

MIGRATION_ACCOUNT = "123456789012"
TARGET_ACCOUNT = "222222222222"
SECOND_TARGET_ACCOUNT = "333333333333"
OUTSIDE_ACCOUNT = "444444444444"
REGION = "us-east-1"

SOURCE_SERVER_ID = "s-1a2b3c4d5e6f70001"
OTHER_SOURCE_SERVER_ID = "s-1a2b3c4d5e6f70002"
EXECUTION = "wave-1-rehearsal"
OTHER_EXECUTION = "wave-1-second-attempt"
WAVE = "wave-1"

LEDGER_TABLE = "mgn-cutover-ledger"
TARGET_ROLE_NAME = "MgnCutoverTargetRole"
EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@dataclass(frozen=True)
class LambdaContext:
    """What Powertools reads from the Lambda context."""

    function_name: str = "mgn-cutover-step"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{MIGRATION_ACCOUNT}:function:mgn-cutover-step"
    aws_request_id: str = "7d3c1e4a-0000-4000-8000-000000000001"


@dataclass(frozen=True)
class TargetNetwork:
    """Where a restored instance lands in a target account."""

    account_id: str
    subnet_id: str
    security_group_ids: tuple[str, ...]
    instance_profile: str

    def placement(self, **extra) -> dict:
        return {
            "accountId": self.account_id,
            "subnetId": self.subnet_id,
            "securityGroupIds": list(self.security_group_ids),
            **extra,
        }


# A world's speed at which every AWS operation is done the moment it starts.
INSTANT = {"mgnLaunchSeconds": 0, "conversionMiBps": 0, "snapshotMiBps": 0, "copyMiBps": 0, "instanceBootSeconds": 0,
           "statusCheckSeconds": 0, "ssmRegistrationSeconds": 0, "commandStartSeconds": 0, "commandSeconds": 0}


def server_state(placement: dict | None = None, options: dict | None = None, **slots) -> dict:
    """The per-server state the Map hands each step: the request's server and options, then slots."""
    target = placement or {
        "accountId": TARGET_ACCOUNT,
        "subnetId": "subnet-0a1b2c3d4e5f60001",
        "securityGroupIds": ["sg-0a1b2c3d4e5f60001"],
    }
    request = parse_request(
        {"wave": WAVE, "servers": [{"sourceServerId": SOURCE_SERVER_ID, "target": target}], "options": options or {}}
    ).model_dump(by_alias=True)
    server = request["servers"][0]
    return {"execution": EXECUTION, "wave": WAVE, "options": request["options"], "server": server, **slots}


_observers: dict[tuple[str, str], object] = {}


def account_client(service: str, account_id: str):
    """A client acting in `account_id`, built independently of the code under test (one per test and
    account: the moto world, and with it the assumed-role credentials, is new for every test)."""
    key = (service, account_id)
    if key not in _observers:
        _observers[key] = _new_account_client(service, account_id)
    return _observers[key]


def migration_client(service: str):
    return account_client(service, MIGRATION_ACCOUNT)


def forget_account_clients() -> None:
    _observers.clear()


def _new_account_client(service: str, account_id: str):
    if account_id == MIGRATION_ACCOUNT:
        return boto3.client(service, region_name=REGION)
    credentials = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{TARGET_ROLE_NAME}",
        RoleSessionName="unit-test-observer",
        ExternalId=os.environ["TARGET_ROLE_EXTERNAL_ID"],
    )["Credentials"]
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def ec2_backend(account_id: str = MIGRATION_ACCOUNT):
    return ec2_backends[account_id][REGION]


def snapshot_ids_of(ec2, image_id: str) -> list[str]:
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    return [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if m.get("Ebs", {}).get("SnapshotId")]


def put_snapshots_under_key(account_id: str, image_id: str, key_arn: str | None) -> None:
    """Encrypt the image's snapshots under `key_arn` in moto's backend: moto's own CreateImage and
    CopyImage drop the encryption of what they copy."""
    backend = ec2_backend(account_id)
    for snapshot_id in snapshot_ids_of(account_client("ec2", account_id), image_id):
        snapshot = backend.snapshots[snapshot_id]
        snapshot.encrypted = key_arn is not None
        snapshot.kms_key_id = key_arn


def set_image_state(account_id: str, image_id: str, image_state: str, reason: str | None = None) -> None:
    image = ec2_backend(account_id).amis[image_id]
    image.state = image_state
    if reason:
        image.state_reason = {"Code": "Client.Error", "Message": reason}


def images_named(ec2, name: str) -> list[dict]:
    return ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]


def instances_tagged(ec2, key: str, value: str) -> list[dict]:
    reservations = ec2.describe_instances(Filters=[{"Name": f"tag:{key}", "Values": [value]}])["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def poll(check, current: dict, slot: str, *args, limit: int = 10) -> dict:
    """Run one step's check the way the state machine's loop does, at most `limit` times, until ready: after a
    pending check, the world's simulated clock moves on by the wait the check asked for."""
    from sandbox import clock

    for _ in range(limit):
        current[slot] = check(current, *args)
        if current[slot]["ready"]:
            return current[slot]
        clock.active().sleep(current[slot]["nextWaitSeconds"])
    raise AssertionError(f"{slot} not ready after {limit} checks: {current[slot]}")


def snapshot_keys_of(ec2, image_id: str) -> set[str | None]:
    snapshots = ec2.describe_snapshots(SnapshotIds=snapshot_ids_of(ec2, image_id))["Snapshots"]
    return {snapshot.get("KmsKeyId") if snapshot["Encrypted"] else None for snapshot in snapshots}


def launch_permissions(ec2, image_id: str) -> list[str]:
    permissions = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]
    return sorted(permission["UserId"] for permission in permissions if "UserId" in permission)


def volume_permissions(ec2, snapshot_id: str) -> list[str]:
    permissions = ec2.describe_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission")
    return sorted(entry["UserId"] for entry in permissions["CreateVolumePermissions"] if "UserId" in entry)


def grants_on(key_arn: str) -> list[dict]:
    return migration_client("kms").list_grants(KeyId=key_arn)["Grants"]


def refuse_calls(client, operation: str, code: str, status: int = 400):
    """Make every `operation` call of `client` fail with `code`, the way AWS answers it (no retry by the SDK
    happens: the answer replaces the request). Returns a function that lifts the refusal."""
    service_id = client.meta.service_model.service_id.hyphenize()

    def answer(**_):
        response = {
            "Error": {"Code": code, "Message": f"{code} (refused by the test)"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return SimpleNamespace(status_code=status, headers={}), response

    event = f"before-call.{service_id}.{operation}"
    client.meta.events.register(event, answer)
    return lambda: client.meta.events.unregister(event, answer)
