"""Each sharing step of the pipeline, taken away in the world or in the pipeline, breaks the rehearsal where AWS
would break the cutover, with AWS's error, and rollback leaves nothing half-shared."""

from __future__ import annotations

import json

import pytest

from sandbox.runner import Sandbox
from tests.rehearsal.helpers import MIGRATION_ACCOUNT, ROOT, lifecycle_of, live_instances, load_event

TARGET = "222222222222"


def one_server_request() -> dict:
    request = load_event("console-wave.json")
    return {**request, "servers": request["servers"][:1]}


def world_file(name: str) -> dict:
    return json.loads((ROOT / "sandbox" / "worlds" / name).read_text())


class _Skipping:
    """A boto3 client whose calls named in `skip` are dropped when their arguments match."""

    def __init__(self, client, skip: dict):
        self._client, self._skip = client, skip

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        drop = self._skip.get(name)
        if drop is None:
            return attribute
        return lambda **kwargs: {} if drop(kwargs) else attribute(**kwargs)


def skip_calls(monkeypatch, service: str, skip: dict) -> None:
    """Make the pipeline leave out some calls to `service` in the migration account."""
    from pipeline import aws

    original = aws.client

    def client(name: str):
        return _Skipping(original(name), skip) if name == service else original(name)

    # The sandbox clears the pipeline's client cache when it builds a world.
    client.cache_clear = original.cache_clear
    monkeypatch.setattr(aws, "client", client)


def rehearse(world: dict | None = None, **options):
    request = one_server_request()
    request = {**request, "options": {**request.get("options", {}), **options}}
    with Sandbox(request, world) as sandbox:
        rehearsal = sandbox.rehearse()
    (server,) = rehearsal.cause["servers"] if isinstance(rehearsal.cause, dict) else [None]
    return rehearsal, server


def assert_nothing_half_shared(rehearsal) -> None:
    migration, target = (rehearsal.inventory["accounts"][a] for a in (MIGRATION_ACCOUNT, TARGET))
    assert migration["images"] == [] and target["images"] == [] and target["snapshots"] == []
    assert all(not s["createVolumePermissions"] for s in migration["snapshots"])
    assert migration["kmsGrants"] == []
    assert live_instances(rehearsal.inventory, TARGET) == []
    assert live_instances(rehearsal.inventory, MIGRATION_ACCOUNT) == []
    assert set(lifecycle_of(rehearsal.inventory).values()) == {"READY_FOR_CUTOVER"}


def test_without_the_launch_permission_the_target_cannot_copy_the_image(monkeypatch):
    # GIVEN a pipeline that forgets the image's launch permission
    adding = lambda kwargs: "Add" in kwargs.get("LaunchPermission", {})  # noqa: E731
    skip_calls(monkeypatch, "ec2", {"modify_image_attribute": adding})

    # WHEN the server is rehearsed
    rehearsal, server = rehearse()

    # THEN the target's CopyImage cannot see the image, as on AWS, and rollback took everything back
    assert rehearsal.status == "FAILED"
    assert (server["outcome"], server["failedStep"]) == ("ROLLED_BACK", "Copy Image To Target")
    assert server["error"]["code"] == "InvalidAMIID.NotFound"
    assert_nothing_half_shared(rehearsal)


def test_without_the_snapshot_permission_the_target_cannot_copy_the_storage(monkeypatch):
    # GIVEN a pipeline that forgets the createVolumePermission of the snapshots
    adding = lambda kwargs: kwargs.get("OperationType") == "add"  # noqa: E731
    skip_calls(monkeypatch, "ec2", {"modify_snapshot_attribute": adding})

    # WHEN the server is rehearsed
    rehearsal, server = rehearse()

    # THEN the copy is refused for the image's storage, as on AWS
    assert (server["outcome"], server["failedStep"]) == ("ROLLED_BACK", "Copy Image To Target")
    assert server["error"]["code"] == "InvalidRequest"
    assert "permission to access the storage" in server["error"]["message"]
    assert_nothing_half_shared(rehearsal)


@pytest.mark.parametrize("restore_from, failed_step, error_type, message", [
    # The default launches from the shared image before the target's copy ends: EBS cannot read the snapshots,
    # and the instance goes from pending to terminated.
    ("sharedImage", "Launch Restored Instance", "RestoredInstanceFailed", "is terminated"),
    # The classic restore waits for the target's copy, which ends failed on the key.
    ("targetImage", "Copy Image To Target", "ImageFailed", "Given key ID is not accessible"),
])
def test_without_key_policy_or_grant_the_target_cannot_use_the_sharing_key(monkeypatch, restore_from, failed_step,
                                                                           error_type, message):
    # GIVEN a sharing key whose policy leaves the target out, and a grant revoked as soon as it was made
    from moto.kms.models import kms_backends
    from pipeline import config, images

    share = images.share

    def share_then_revoke(current: dict) -> dict:
        shared = share(current)
        # Revoked by someone else, not by the pipeline's role: straight on the key's grants.
        key_id = config.sharing_key_arn().rsplit("/", 1)[1]
        kms_backends[MIGRATION_ACCOUNT]["us-east-1"].keys[key_id].grants.pop(shared["grantId"])
        return shared

    monkeypatch.setattr(images, "share", share_then_revoke)

    # WHEN the server is rehearsed
    rehearsal, server = rehearse(world_file("key-policy-missing-target.json"), restoreFrom=restore_from)

    # THEN EC2 accepts the calls but AWS's later key check fails the step, and rollback takes everything back
    # (the target's copy, failed or still running, included)
    assert (server["outcome"], server["failedStep"]) == ("ROLLED_BACK", failed_step)
    assert server["error"]["type"] == error_type
    assert message in server["error"]["message"]
    assert_nothing_half_shared(rehearsal)


def test_a_key_policy_missing_the_target_is_carried_by_the_grant():
    # GIVEN the same key policy, with the pipeline's grant left in place
    # WHEN the server is rehearsed
    rehearsal, _ = rehearse(world_file("key-policy-missing-target.json"))

    # THEN the grant alone lets EBS in the target account use the key
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    assert len(live_instances(rehearsal.inventory, TARGET)) == 1


def test_a_target_role_that_trusts_someone_else_refuses_the_pipeline():
    # GIVEN a target account whose role trusts another account's pipeline
    # WHEN the server is rehearsed
    rehearsal, server = rehearse(world_file("role-trusts-someone-else.json"))

    # THEN the first step in the target account fails with STS's AccessDenied, and sharing is taken back
    assert (server["outcome"], server["failedStep"]) == ("ROLLED_BACK", "Copy Image To Target")
    assert server["error"]["code"] == "AccessDenied"
    assert "sts:AssumeRole" in server["error"]["message"]
    assert_nothing_half_shared(rehearsal)


def test_without_the_instance_profile_the_restored_instance_is_not_launched():
    # GIVEN a target account where the target stack's instance profile does not exist
    world = {"targetAccounts": {TARGET: {"instanceProfiles": False}}}

    # WHEN the server is rehearsed
    rehearsal, server = rehearse(world)

    # THEN RunInstances refuses the profile, as EC2 does
    assert (server["outcome"], server["failedStep"]) == ("ROLLED_BACK", "Launch Restored Instance")
    assert server["error"]["code"] == "InvalidParameterValue"
    assert "Invalid IAM Instance Profile name" in server["error"]["message"]
    assert_nothing_half_shared(rehearsal)


@pytest.mark.parametrize("world_name", ["replicated-under-sharing-key.json", "slow-large-server.json"])
def test_shipped_worlds_that_should_cut_over_do(world_name):
    # GIVEN a shipped world: replication under the sharing key, or a slow world with large disks
    calls: list[str] = []
    with Sandbox(one_server_request(), world_file(world_name), progress=lambda e: calls.append(e["step"])) as sandbox:
        # WHEN the server is rehearsed
        rehearsal = sandbox.rehearse()

    # THEN it cuts over; under the sharing key no re-encrypting copy is made, and the slow world goes round
    # every poll loop of the state machine (the target's copy, restoring from the shared image, after finalize)
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    if world_name.startswith("replicated"):
        assert "Check Sharing Copy" not in calls
    else:
        loops = ["Check Cutover Launch", "Check Image", "Check Sharing Copy", "Check Target Copy",
                 "Check Restored Instance", "Check Managed Instance", "Check Agent Install", "Check Agent Configure"]
        assert all(calls.count(step) >= 2 for step in loops), {step: calls.count(step) for step in loops}
