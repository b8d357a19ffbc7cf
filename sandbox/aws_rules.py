"""AWS behaviour the cutover pipeline depends on and moto 5.2 does not model, added to moto's own models.

Each rule is a class whose docstring names the AWS behaviour it adds. A rule replaces a few methods of
moto's EC2, SSM, KMS or STS backends, or of moto's request handlers where the behaviour hangs on a
parameter moto does not read; everything else stays moto's. `install()` applies every rule and
`uninstall()` puts moto's methods back; both are idempotent.

What a rule adds (ready times, registration times, image disks) is stored on moto's own objects, so
it is reset with them when the mock ends. How long an operation takes, in simulated seconds on the world's
clock (sandbox/clock.py), is set in `pacing`; each operation is recorded on the clock as it starts.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto.core.exceptions import AccessDeniedError, ServiceException
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError, InvalidParameterDependency
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot
from moto.ec2.models.instances import Instance, InstanceBackend, InstanceState, StateReason
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.responses import instances as moto_instance_responses
from moto.ec2.responses.instances import InstanceResponse
from moto.ec2.utils import generic_filter, random_ami_id, random_snapshot_id
from moto.iam.models import iam_backends
from moto.kms import models as moto_kms_models
from moto.kms.models import Key, KmsBackend, kms_backends
from moto.ssm.exceptions import InvalidFilterKey
from moto.ssm.exceptions import SSMException as RESTError
from moto.ssm.models import Command, SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse

from sandbox import clock

SSM_CORE_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
AWS_MANAGED_EBS_ALIAS = "alias/aws/ebs"

# Shown by the inventory and by tests for a volume or snapshot under the account's AWS managed EBS key.
AWS_MANAGED_EBS_LABEL = "aws/ebs"


@dataclass
class Pacing:
    """How long AWS takes, in simulated seconds; a World sets these from its spec's `speed`.

    A throughput of 0 MiB/s means at once (for tests of one step, whose clock does not move).
    """

    # CreateImage snapshots every volume of the instance, a full copy of its data the first time.
    snapshot_mib_per_second: float = 100.0
    # CopyImage under a new key re-encrypts every block: a full copy.
    copy_mib_per_second: float = 75.0
    # RunInstances: pending until running, then both status checks initializing until they pass.
    instance_boot_seconds: float = 40.0
    status_check_seconds: float = 180.0
    # After the instance runs, until its SSM agent checks in (DescribeInstanceInformation Online).
    ssm_registration_seconds: float = 90.0
    # GetCommandInvocation answers InvocationDoesNotExist this long after SendCommand, then InProgress.
    command_start_seconds: float = 2.0
    command_seconds: float = 30.0
    # Document name -> what the agent writes to standard error: commands of that document end Failed.
    command_failures: dict[str, str] = field(default_factory=dict)


def transfer_seconds(gib: float, mib_per_second: float) -> float:
    """How long `gib` GiB takes at a throughput; 0 MiB/s is at once."""
    return gib * 1024 / mib_per_second if mib_per_second else 0.0


pacing = Pacing()


def reset_pacing() -> None:
    """Back to the defaults; the object stays the same, so a module that imported it sees the change."""
    pacing.__dict__.update(Pacing().__dict__)


# --- patch machinery -------------------------------------------------------------------------------------------

_ABSENT = object()
_lock = threading.Lock()
_applied: list[tuple[Any, str, Any]] = []


class Rule:
    """One AWS behaviour; `replacements()` lists the moto attributes it replaces."""

    def replacements(self) -> Iterable[tuple[Any, str, Callable[[Any], Any]]]:
        """Triples (class or module, attribute, factory); the factory turns moto's attribute into its replacement."""
        raise NotImplementedError


def install() -> None:
    """Apply every rule to moto's classes; a second call changes nothing."""
    with _lock:
        if _applied:
            return
        for rule in RULES:
            for owner, name, factory in rule.replacements():
                _applied.append((owner, name, owner.__dict__.get(name, _ABSENT)))
                setattr(owner, name, factory(getattr(owner, name, None)))


def uninstall() -> None:
    """Give moto its own methods back, in the reverse order they were replaced."""
    with _lock:
        while _applied:
            owner, name, previous = _applied.pop()
            if previous is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, previous)


def installed() -> bool:
    return bool(_applied)


# --- lookups across accounts -----------------------------------------------------------------------------------


def ec2_backend(account_id: str, region: str) -> Any:
    return ec2_backends[account_id][region]


def _peer_backends(backend: Any) -> Iterator[Any]:
    """EC2 backends of the other accounts in the backend's region, those moto has created already."""
    for account_id, regions in list(ec2_backends.items()):
        if account_id == backend.account_id:
            continue
        # dict.get does not create a backend for a region nobody has used yet.
        peer = dict.get(regions, backend.region_name)
        if peer is not None:
            yield peer


def _launch_permitted(ami: Ami, account_id: str) -> bool:
    return ami.owner_id == account_id or ami.is_public or {"UserId": account_id} in ami.launch_permissions


def _shared_images(backend: Any) -> list[Ami]:
    """Images other accounts own and let this backend's account launch."""
    shared = []
    for peer in _peer_backends(backend):
        for ami in list(peer.amis.values()):
            # moto loads its public catalogue into every account; those copies are not another account's images.
            if ami.owner_id == peer.account_id and _launch_permitted(ami, backend.account_id):
                shared.append(ami)
    return shared


def _shared_image(backend: Any, image_id: str) -> Ami | None:
    """The image `image_id` if another account owns it and lets this backend's account launch it.

    The same answer as searching `_shared_images`, by id in each peer's table instead of through every image
    of every account (a wave polls its images thousands of times)."""
    for peer in _peer_backends(backend):
        ami = peer.amis.get(image_id)
        if ami is not None and ami.owner_id == peer.account_id and _launch_permitted(ami, backend.account_id):
            return ami
    return None


def find_image(backend: Any, image_id: str) -> Ami | None:
    """The image `image_id` as the backend's account can see it: its own, or shared with it."""
    own = backend.amis.get(image_id)
    if own is not None:
        return own
    return _shared_image(backend, image_id)


def _image_exists_anywhere(image_id: str, region: str) -> bool:
    for regions in list(ec2_backends.values()):
        backend = dict.get(regions, region)
        if backend is not None and image_id in backend.amis:
            return True
    return False


def _restorable_by(snapshot: Snapshot, account_id: str) -> bool:
    return (
        snapshot.owner_id == account_id
        or account_id in snapshot.create_volume_permission_userids
        or "all" in snapshot.create_volume_permission_groups
    )


def _shared_snapshots(backend: Any) -> list[Snapshot]:
    shared = []
    for peer in _peer_backends(backend):
        for snapshot in list(peer.snapshots.values()):
            if snapshot.owner_id == peer.account_id and _restorable_by(snapshot, backend.account_id):
                shared.append(snapshot)
    return shared


class SharedView:
    """A resource as an account it is shared with sees it: the owner's tags are not visible there."""

    def __init__(self, resource: Any):
        self._resource = resource

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)

    # None rather than [] so the response leaves Tags out, as AWS does for a resource without tags.
    @property
    def tag_set(self) -> None:
        return None

    tag_list = tag_set

    def get_tags(self) -> list:
        return []


# --- keys ------------------------------------------------------------------------------------------------------


def resolve_key(key_id: str, account_id: str, region: str) -> Key | None:
    """The KMS key that `key_id` (id, ARN, alias or alias ARN) names, seen from `account_id`; None if none."""
    owner = key_id.split(":")[4] if key_id.startswith("arn:") else account_id
    kms = kms_backends[owner][region]
    name = key_id.split(":", 5)[5] if key_id.startswith("arn:") else key_id
    if name.startswith("key/"):
        name = name.removeprefix("key/")
    if not name.startswith("alias/"):
        return kms.keys.get(name)
    key = next((key for key in list(kms.keys.values()) if name in key.aliases), None)
    if key is None and name == AWS_MANAGED_EBS_ALIAS:
        # AWS creates the account's EBS key on first use; moto does the same from its EBS backend.
        ec2_backend(owner, region)._create_default_encryption_key()
        key = next((key for key in list(kms.keys.values()) if name in key.aliases), None)
    return key


def key_arn(key_id: str | None, account_id: str, region: str) -> str | None:
    """The key ARN that EC2 records for a key named any way; the name itself if no such key exists."""
    if not key_id:
        return None
    key = resolve_key(key_id, account_id, region)
    return key.arn if key is not None else key_id


# What EBS asks KMS for on a key, on behalf of the account that copies or launches: reading data under the key
# (a source snapshot), or writing data under it (a copy's or a volume's new data key). Each entry is a choice.
EBS_KEY_USE = {
    "read": (("DescribeKey",), ("Decrypt", "ReEncryptFrom"), ("CreateGrant",)),
    "write": (("DescribeKey",), ("GenerateDataKeyWithoutPlaintext", "GenerateDataKey"), ("Decrypt",),
              ("CreateGrant",)),
}


def key_usable(key_id: str | None, account_id: str, region: str, use: str = "read") -> bool:
    """Whether EBS may use the key for `account_id`: its own enabled key, or another account's enabled customer
    managed key whose key policy or grants allow every KMS action EBS needs (DescribeKey, Decrypt or ReEncrypt*,
    GenerateDataKey* to write, CreateGrant), under the conditions EBS's calls meet.

    A disabled key, a key pending deletion, a revoked grant or a policy statement taken away remove the access.
    NOTE: EC2 consults this; KMS calls an account makes on another account's key ARN (DescribeKey,
    CreateGrant) still act on the caller's own keys in moto. The other account's IAM policy, which AWS
    also requires for access through the key policy, is not evaluated here.
    """
    if not key_id:
        return True
    key = resolve_key(key_id, account_id, region)
    if key is None or key.key_state != "Enabled":
        return False
    if key.account_id == account_id:
        return True
    if key.key_manager == "AWS":
        return False
    allowed = _granted_operations(key, account_id) | _policy_operations(key, account_id, region)
    if _policy_denies(key, account_id, region):
        return False
    return all(any(operation in allowed for operation in choice) for choice in EBS_KEY_USE[use])


def is_aws_managed(key_id: str | None, region: str) -> bool:
    if not key_id or not key_id.startswith("arn:"):
        return False
    key = resolve_key(key_id, key_id.split(":")[4], region)
    return key is not None and key.key_manager == "AWS"


def _principal_in(principal: str, account_id: str) -> bool:
    return principal in ("*", account_id) or f":{account_id}:" in principal


_KMS_OPERATIONS = ("DescribeKey", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
                   "GenerateDataKeyWithoutPlaintext", "CreateGrant")


def _granted_operations(key: Key, account_id: str) -> set[str]:
    """Operations the key's grants give principals of `account_id` (a revoked or retired grant is gone)."""
    return {
        operation
        for grant in list(key.grants.values())
        if _principal_in(grant.grantee_principal, account_id)
        for operation in grant.operations
    }


def _ebs_request_context(account_id: str, region: str) -> dict[str, Any]:
    """The condition keys of a KMS request EBS makes for the account (for a grant to itself)."""
    return {"kms:viaservice": f"ec2.{region}.amazonaws.com", "kms:grantisforawsresource": "true",
            "kms:calleraccount": account_id, "aws:principalaccount": account_id}


def _key_statements(key: Key, account_id: str, region: str, effect: str) -> Iterator[dict]:
    try:
        statements = _as_list(json.loads(key.policy).get("Statement", []))
    except (TypeError, ValueError, AttributeError):
        return
    context = _ebs_request_context(account_id, region)
    for statement in statements:
        if statement.get("Effect") != effect:
            continue
        if not any(_principal_in(p, account_id) for p in _aws_principals(statement.get("Principal"))):
            continue
        if conditions_hold(statement.get("Condition", {}), context):
            yield statement


def _policy_operations(key: Key, account_id: str, region: str) -> set[str]:
    allowed: set[str] = set()
    for statement in _key_statements(key, account_id, region, "Allow"):
        allowed |= _matching_operations(statement)
    return allowed


def _policy_denies(key: Key, account_id: str, region: str) -> bool:
    return any(_matching_operations(s) & {"Decrypt", "ReEncryptFrom", "CreateGrant"}
               for s in _key_statements(key, account_id, region, "Deny"))


def _matching_operations(statement: dict) -> set[str]:
    actions = [a.lower() for a in _as_list(statement.get("Action", []))]
    return {op for op in _KMS_OPERATIONS if any(a == "*" or fnmatch.fnmatchcase(f"kms:{op}".lower(), a)
                                                 for a in actions)}


def conditions_hold(condition: dict, context: dict[str, Any]) -> bool:
    """Whether an IAM policy Condition block holds for a request with these (lower-case) condition keys.

    Every operator must hold; a key the request does not carry fails it, as in IAM (no ...IfExists forms).
    NOTE: only the operators the pipeline's policies and their variations use are known: String(Not)Equals,
    StringLike, ArnLike, ArnEquals, Bool; another operator fails the condition.
    """
    for operator, tests in (condition or {}).items():
        for name, expected in tests.items():
            value = context.get(name.lower())
            if value is None or not _operator_holds(operator, str(value), [str(e) for e in _as_list(expected)]):
                return False
    return True


def _operator_holds(operator: str, value: str, expected: list[str]) -> bool:
    if operator in ("StringEquals", "ArnEquals"):
        return value in expected
    if operator == "StringNotEquals":
        return value not in expected
    if operator in ("StringLike", "ArnLike"):
        return any(fnmatch.fnmatchcase(value, pattern) for pattern in expected)
    if operator == "Bool":
        return value.lower() in [e.lower() for e in expected]
    return False


def _aws_principals(principal: Any) -> list:
    if principal == "*":
        return ["*"]
    return _as_list(principal.get("AWS", [])) if isinstance(principal, dict) else []


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def tags_of(resource: Any) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in resource.get_tags()}


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# --- image disks -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageDisk:
    """One block device mapping of an image, backed by a snapshot the image owner holds."""

    device_name: str
    snapshot_id: str
    size: int
    volume_type: str
    delete_on_termination: bool


def image_disks(ami: Ami) -> list[ImageDisk]:
    disks = getattr(ami, "sandbox_disks", None)
    if disks is not None:
        return disks
    # An image moto made itself (its catalogue, RegisterImage) has the one auto-created 15 GiB snapshot.
    return [ImageDisk(ami.root_device_name, ami.ebs_snapshot.id, 15, "standard", False)]


def image_snapshots(ami: Ami) -> list[Snapshot]:
    snapshots = ami.ec2_backend.snapshots
    return [snapshots[disk.snapshot_id] for disk in image_disks(ami) if disk.snapshot_id in snapshots]


def _give_disks(ami: Ami, disks: list[ImageDisk], root_device_name: str) -> None:
    """Replace the snapshot moto's Ami constructor invents by the image's real disks."""
    ami.ec2_backend.snapshots.pop(ami.ebs_snapshot.id, None)
    ami.sandbox_disks = disks
    ami.root_device_name = root_device_name
    ami.root_device_type = "ebs"
    root = next((disk for disk in disks if disk.device_name == root_device_name), disks[0])
    ami.ebs_snapshot = ami.ec2_backend.snapshots[root.snapshot_id]


def _image_block_device_mappings(ami: Ami) -> list[dict[str, Any]]:
    mappings = []
    for disk in image_disks(ami):
        snapshot = ami.ec2_backend.snapshots.get(disk.snapshot_id)
        mappings.append(
            {
                "DeviceName": disk.device_name,
                # Like AWS: Encrypted and the snapshot show here, the key only on the snapshot itself.
                "Ebs": {
                    "SnapshotId": disk.snapshot_id,
                    "VolumeSize": disk.size,
                    "VolumeType": disk.volume_type,
                    "DeleteOnTermination": disk.delete_on_termination,
                    "Encrypted": bool(snapshot and snapshot.encrypted),
                },
            }
        )
    return mappings


def _require_unique_name(backend: Any, name: str | None) -> None:
    for ami in list(backend.amis.values()):
        if name and ami.name == name and ami.owner_id == backend.account_id:
            raise EC2ClientError("InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {ami.id}")


def _start_pending(ami: Ami, operation: str, mib_per_second: float, failure: tuple[str, str] | None = None) -> None:
    """The image is pending while its snapshots are written (every disk, in full), then available or failed."""
    seconds = transfer_seconds(sum(disk.size for disk in image_disks(ami)), mib_per_second)
    start = clock.now()
    ami.sandbox_ready_at = start + seconds
    ami.sandbox_failure = failure
    clock.record(operation, start, ami.sandbox_ready_at, full_copy=True)
    if seconds > 0:
        ami.state = "pending"
        for snapshot in image_snapshots(ami):
            snapshot.status = "pending"
    else:
        _finish_image(ami)


def _finish_image(ami: Ami) -> None:
    failure = getattr(ami, "sandbox_failure", None)
    ami.state = "failed" if failure else "available"
    if failure:
        ami.state_reason = {"Code": failure[0], "Message": failure[1]}
    for snapshot in image_snapshots(ami):
        snapshot.status = "error" if failure else "completed"


def _observe_image(ami: Ami) -> None:
    """A DescribeImages call that includes the image: a pending image whose time has come is done."""
    if ami.state != "pending" or not hasattr(ami, "sandbox_ready_at"):
        return
    if clock.now() >= ami.sandbox_ready_at:
        _finish_image(ami)


# --- rules -----------------------------------------------------------------------------------------------------


class ImagesVisibleWhereShared(Rule):
    """DescribeImages in an account lists the images other accounts share with it (launch permission).

    AWS shows a shared image, owner id and all, to the account named in its launch permission, by image
    id and under ExecutableUsers=["self"], and without the owner's tags; removing the permission hides it
    again. A call that includes a pending image whose time has come shows it available (see `pacing`).
    """

    def replacements(self):
        yield AmisResponse, "describe_images", lambda original: _describe_images


def _describe_images(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    backend = self.ec2_backend
    ids = self._get_param("ImageIds", [])
    owners = self._get_param("Owners", [])
    users = self._get_param("ExecutableUsers", [])
    filters = self._filters_from_querystring()

    if len(ids) == 1:
        # The pipeline's polls name one image: found by id, not by listing every account's images.
        found = _shared_image(backend, ids[0])
        candidates = [found] if found is not None else []
    else:
        candidates = _shared_images(backend)
    shared = [ami for ami in candidates if _image_wanted(ami, backend.account_id, ids, owners, users)]
    if filters:
        shared = generic_filter(filters, shared)
    own_ids = [image_id for image_id in ids if image_id not in {ami.id for ami in shared}]
    own = [] if ids and not own_ids else backend.describe_images(own_ids, filters, users, owners)

    for ami in own + shared:
        _observe_image(ami)
    return ActionResult({"Images": own + [SharedView(ami) for ami in shared]})


def _image_wanted(ami: Ami, me: str, ids: list[str], owners: list[str], users: list[str]) -> bool:
    if ids:
        return ami.id in ids
    if owners and ami.owner_id not in [me if owner == "self" else owner for owner in owners]:
        return False
    if users:
        accounts = [me if user == "self" else user for user in users]
        return ami.is_public or any({"UserId": account} in ami.launch_permissions for account in accounts)
    return True


class SnapshotsVisibleWhereShared(Rule):
    """DescribeSnapshots lists snapshots other accounts share (createVolumePermission) and honours the owner filters.

    AWS returns a shared snapshot by id, under RestorableByUserIds, or in a plain listing, without the
    owner's tags; OwnerIds and RestorableByUserIds (which moto ignores) narrow the listing. ModifySnapshot-
    Attribute also takes the structured CreateVolumePermission={"Add"/"Remove": [...]} form.
    """

    def replacements(self):
        yield ElasticBlockStore, "describe_snapshots", lambda original: _describe_snapshots
        yield ElasticBlockStore, "modify_snapshot_attribute", lambda original: _modify_snapshot_attribute


def _describe_snapshots(self: ElasticBlockStore) -> ActionResult:
    backend = self.ec2_backend
    me = backend.account_id
    ids = self._get_param("SnapshotIds", [])
    owners = [me if owner == "self" else owner for owner in self._get_param("OwnerIds", [])]
    restorers = [me if user == "self" else user for user in self._get_param("RestorableByUserIds", [])]
    filters = self._filters_from_querystring()

    shared = [snap for snap in _shared_snapshots(backend) if not ids or snap.id in ids]
    if filters:
        shared = generic_filter(filters, shared)
    own_ids = [snapshot_id for snapshot_id in ids if snapshot_id not in {snap.id for snap in shared}]
    own = [] if ids and not own_ids else backend.describe_snapshots(snapshot_ids=own_ids, filters=filters)

    def wanted(snapshot: Snapshot) -> bool:
        by_owner = not owners or snapshot.owner_id in owners
        by_restorer = not restorers or any(_restorable_by(snapshot, user) for user in restorers)
        return by_owner and by_restorer

    listed = [snap for snap in own if wanted(snap)] + [SharedView(snap) for snap in shared if wanted(snap)]
    return ActionResult({"Snapshots": listed})


def _modify_snapshot_attribute(self: ElasticBlockStore) -> EmptyResult:
    snapshot_id = self._get_param("SnapshotId")
    structured = self._get_param("CreateVolumePermission", {}) or {}
    operation = self._get_param("OperationType")
    listed_users = self._get_param("UserIds", [])
    listed_groups = self._get_param("GroupNames", [])
    self.error_on_dryrun()

    changes = {"add": structured.get("Add", []), "remove": structured.get("Remove", [])}
    if operation in changes:
        changes[operation] = changes[operation] + [{"UserId": u} for u in listed_users]
        changes[operation] += [{"Group": g} for g in listed_groups]
    for kind, permissions in changes.items():
        users = [p["UserId"] for p in permissions if p.get("UserId")]
        groups = [p["Group"] for p in permissions if p.get("Group")]
        if not users and not groups:
            continue
        if kind == "add":
            self.ec2_backend.add_create_volume_permission(snapshot_id, user_ids=users, groups=groups)
        else:
            self.ec2_backend.remove_create_volume_permission(snapshot_id, user_ids=users, groups=groups)
    return EmptyResult()


class CreateImageSnapshotsEveryVolume(Rule):
    """CreateImage snapshots each volume of the instance, encrypted like the volume, and starts pending.

    AWS makes one snapshot per attached EBS volume, with that volume's size, type and KMS key, tags the
    snapshots from a "snapshot" TagSpecification (moto raises NotImplementedError there), and refuses a
    name the account already uses (InvalidAMIName.Duplicate). moto invents a single unencrypted 15 GiB
    snapshot instead. A volume created from a snapshot without a key keeps the snapshot's key.
    NOTE: NoReboot is not modelled (the instance never reboots), and CreateVolume from another account's
    shared snapshot is not supported (only RunInstances from a shared image is).
    """

    def replacements(self):
        yield AmiBackend, "create_image", _create_image
        yield Ami, "block_device_mappings", lambda original: property(_image_block_device_mappings)
        yield EBSBackend, "create_volume", _create_volume


def _create_image(original: Callable) -> Callable:
    def create_image(self, instance_id: str, name: str, description: str, tag_specifications: list) -> Ami:
        image_specs = [spec for spec in tag_specifications if spec["ResourceType"] != "snapshot"]
        snapshot_tags = {
            tag["Key"]: tag["Value"]
            for spec in tag_specifications
            if spec["ResourceType"] == "snapshot"
            for tag in spec.get("Tags", [])
        }
        _require_unique_name(self, name)
        ami = original(self, instance_id, name, description, tag_specifications=image_specs)
        instance = self.get_instance(instance_id)

        disks = []
        for device_name, mapping in instance.get_block_device_mapping:
            volume = self.get_volume(mapping.volume_id)
            snapshot = self.create_snapshot(
                volume.id, f"Created by CreateImage({instance_id}) for {ami.id}", from_ami=ami.id
            )
            snapshot.kms_key_id = volume.kms_key_id if volume.encrypted else None
            snapshot.add_tags(snapshot_tags)
            deleted_with_instance = bool(mapping.delete_on_termination)
            disks.append(ImageDisk(device_name, snapshot.id, volume.size, volume.volume_type, deleted_with_instance))
        _give_disks(ami, disks, instance.root_device_name)
        _start_pending(ami, "CreateImage", pacing.snapshot_mib_per_second)
        return ami

    return create_image


def _create_volume(original: Callable) -> Callable:
    def create_volume(self, size: int, zone_name: str, snapshot_id: str | None = None, encrypted: bool = False,
                      kms_key_id: str | None = None, **kwargs: Any) -> Any:
        if snapshot_id and not kms_key_id:
            snapshot = self.get_snapshot(snapshot_id)
            if snapshot.encrypted:
                encrypted, kms_key_id = True, snapshot.kms_key_id
        return original(self, size, zone_name, snapshot_id=snapshot_id, encrypted=encrypted, kms_key_id=kms_key_id,
                        **kwargs)

    return create_volume


class CopyImageAcrossAccountsAndKeys(Rule):
    """CopyImage pulls a shared image into another account and re-encrypts it under the key it names.

    Like AWS: the destination needs launch permission on the image (else InvalidAMIID.NotFound) and
    createVolumePermission on every snapshot (else InvalidRequest "You do not have permission to access
    the storage of this ami"). Encrypted=True with KmsKeyId K gives snapshots under K's ARN; without
    KmsKeyId an encrypted copy keeps the source key in the same account. A key the destination cannot use
    fails the copy later, not the call: the image goes pending, then failed. ClientToken makes the call
    idempotent, TagSpecifications and CopyImageTags tag the copy, and the copy starts pending. A copy
    beyond `limits.concurrent_image_copies` copies in flight in the destination account and region is
    refused (ResourceLimitExceeded), as EC2 refuses it.
    """

    def replacements(self):
        yield AmisResponse, "copy_image", lambda original: _copy_image_request
        yield AmiBackend, "copy_image", lambda original: _copy_image


def _copy_image_request(self: AmisResponse) -> ActionResult:
    tags = self._parse_tag_specification()
    params = {
        "encrypted": _truthy(self._get_param("Encrypted", False)),
        "kms_key_id": self._get_param("KmsKeyId"),
        "client_token": self._get_param("ClientToken"),
        "image_tags": tags.get("image", {}),
        "snapshot_tags": tags.get("snapshot", {}),
        "copy_image_tags": _truthy(self._get_param("CopyImageTags", False)),
    }
    source_image_id = self._get_param("SourceImageId")
    source_region = self._get_param("SourceRegion")
    self.error_on_dryrun()
    image = self.ec2_backend.copy_image(
        source_image_id, source_region, self._get_param("Name"), self._get_param("Description"), **params
    )
    return ActionResult({"ImageId": image.id})


# NOTE: a pending source image is copied (and launched) as if available; AWS would refuse or wait.
def _copy_image(self, source_image_id: str, source_region: str | None, name: str | None = None,
                description: str | None = None, encrypted: bool = False, kms_key_id: str | None = None,
                client_token: str | None = None, image_tags: dict | None = None, snapshot_tags: dict | None = None,
                copy_image_tags: bool = False) -> Ami:
    tokens = self.__dict__.setdefault("sandbox_copy_tokens", {})
    if client_token and tokens.get(client_token) in self.amis:
        return self.amis[tokens[client_token]]
    _require_a_free_copy_slot(self)

    source_region = source_region or self.region_name
    source = find_image(ec2_backend(self.account_id, source_region), source_image_id)
    if source is None:
        raise InvalidAMIIdError(source_image_id)
    if kms_key_id and not encrypted:
        raise InvalidParameterDependency("KmsKeyId", "Encrypted")
    _require_storage_access(source, self.account_id)
    _require_unique_name(self, name or source.name)

    ami = Ami(self, random_ami_id(), source_ami=source, name=name, description=description)
    ami.source_image_id, ami.source_image_region = source.id, source_region
    target_key = key_arn(kms_key_id, self.account_id, self.region_name)
    disks, failure = [], None
    for disk in image_disks(source):
        snapshot, problem = _copy_snapshot_for(self, ami, source, disk, encrypted, target_key, snapshot_tags or {})
        disks.append(ImageDisk(disk.device_name, snapshot.id, disk.size, disk.volume_type, disk.delete_on_termination))
        failure = failure or problem
    _give_disks(ami, disks, source.root_device_name)

    # AWS does not let user-defined tags of another account's image travel with it.
    tags = tags_of(source) if copy_image_tags and source.owner_id == self.account_id else {}
    ami.add_tags({**tags, **(image_tags or {})})
    self.amis[ami.id] = ami
    _start_pending(ami, "CopyImage", pacing.copy_mib_per_second, failure)
    if client_token:
        tokens[client_token] = ami.id
    return ami


@dataclass
class Limits:
    """AWS quotas the sandbox enforces; a World sets them from its spec's `limits`."""

    # AMI copies in flight at once per destination account and region (AWS documents about 50).
    concurrent_image_copies: int = 50


limits = Limits()


def copies_in_flight(backend: Any) -> list[Ami]:
    """The destination account's copies still pending (a copy whose time has come is finished first)."""
    in_flight = []
    for ami in list(backend.amis.values()):
        if getattr(ami, "source_image_id", None) is None or ami.owner_id != backend.account_id:
            continue
        _observe_image(ami)
        if ami.state == "pending":
            in_flight.append(ami)
    return in_flight


def _require_a_free_copy_slot(backend: Any) -> None:
    running = len(copies_in_flight(backend))
    if running >= limits.concurrent_image_copies:
        raise EC2ClientError(
            "ResourceLimitExceeded",
            f"You have reached the limit of {limits.concurrent_image_copies} concurrent AMI copies in "
            f"{backend.region_name} ({running} in progress). Wait for a copy to complete, then try again.",
        )


def _require_storage_access(source: Ami, account_id: str) -> None:
    if source.owner_id == account_id:
        return
    if not all(_restorable_by(snapshot, account_id) for snapshot in image_snapshots(source)):
        raise EC2ClientError("InvalidRequest", "You do not have permission to access the storage of this ami")


def _copy_snapshot_for(backend: Any, ami: Ami, source: Ami, disk: ImageDisk, encrypted: bool, target_key: str | None,
                       tags: dict) -> tuple[Snapshot, tuple[str, str] | None]:
    source_snapshot = source.ec2_backend.snapshots[disk.snapshot_id]
    same_account = source.owner_id == backend.account_id
    if target_key:
        key = target_key
    elif source_snapshot.encrypted and same_account:
        key = source_snapshot.kms_key_id
    elif source_snapshot.encrypted or encrypted:
        # NOTE: a copy of another account's encrypted snapshot without KmsKeyId is put under the
        # destination's default EBS key, as CopySnapshot documents; AWS may also accept the source key.
        key = backend._create_default_encryption_key()
    else:
        key = None

    snapshot = Snapshot(
        backend,
        random_snapshot_id(),
        volume=source_snapshot.volume,
        description=f"Copied for DestinationAmi {ami.id} from SourceAmi {source.id} "
        f"for SourceSnapshot {source_snapshot.id}",
        encrypted=key is not None,
        kms_key_id=key,
        owner_id=backend.account_id,
        from_ami=ami.id,
    )
    backend.snapshots[snapshot.id] = snapshot
    snapshot.add_tags(tags)
    return snapshot, _copy_key_problem(backend, source_snapshot, key)


def _copy_key_problem(backend: Any, source_snapshot: Snapshot, key: str | None) -> tuple[str, str] | None:
    me, region = backend.account_id, backend.region_name
    readable = not source_snapshot.encrypted or key_usable(source_snapshot.kms_key_id, me, region)
    if readable and key_usable(key, me, region, use="write"):
        return None
    # NOTE: AWS does not document the state reason of a copy failed on its key; this carries the
    # message users report for it.
    unusable = key if readable else source_snapshot.kms_key_id
    return "Client.InvalidKMSKey.InvalidState", f"Given key ID is not accessible: {unusable}"


class LaunchFromImageDisks(Rule):
    """RunInstances builds the volumes from the image's mappings, honours launch permission and KMS access.

    AWS creates one volume per block device mapping of the image (size, type, snapshot), overridden by
    the request's mapping of the same device: Encrypted with KmsKeyId re-encrypts under that key,
    otherwise a volume keeps its snapshot's encryption. Another account's image needs launch permission
    (else InvalidAMIID.NotFound), but not createVolumePermission on its snapshots: EC2 gives the launch
    access to them. A volume under a key the account cannot use (the snapshot's to read, the mapping's to
    write) makes the instance terminate right after launch (state reason Client.InternalError). A mapping
    cannot take the encryption off an encrypted snapshot's volume (Encrypted false:
    InvalidBlockDeviceMapping), and a KmsKeyId needs Encrypted true (InvalidParameterDependency).
    GetEbsDefaultKmsKeyId answers the account's default EBS key, which moto does not implement.
    moto gives every instance one blank 8 GiB volume instead.
    """

    def replacements(self):
        yield InstanceResponse, "_parse_block_device_mapping", lambda original: _parse_mappings_keeping_unset
        yield InstanceBackend, "run_instances", _run_instances
        yield ElasticBlockStore, "get_ebs_default_kms_key_id", lambda original: _get_ebs_default_kms_key_id


def _get_ebs_default_kms_key_id(self: ElasticBlockStore) -> ActionResult:
    self.error_on_dryrun()
    backend = self.ec2_backend
    return ActionResult({"KmsKeyId": backend.default_kms_key_id or backend._create_default_encryption_key()})


_EBS_FIELDS = ("SnapshotId", "VolumeSize", "DeleteOnTermination", "VolumeType", "Iops", "Encrypted", "KmsKeyId")


def _parse_mappings_keeping_unset(self: InstanceResponse) -> list[dict[str, Any]]:
    """The request's mappings with unset fields left None: an override of an image's device may name only a key.

    moto fills unset flags with False and demands a size or snapshot in every mapping.
    """
    parsed = []
    for raw in self._get_param("BlockDeviceMappings", []):
        ebs = raw.get("Ebs")
        parsed.append({
            "DeviceName": raw.get("DeviceName"),
            "VirtualName": raw.get("VirtualName"),
            # An instance store mapping (VirtualName, no Ebs) makes no EBS volume.
            "NoDevice": "" if ebs is None and raw.get("VirtualName") else raw.get("NoDevice"),
            "Ebs": {name: (ebs or {}).get(name) for name in _EBS_FIELDS},
        })
    return parsed


def _run_instances(original: Callable) -> Callable:
    def run_instances(self, image_id: str, count: int, user_data: Any, security_group_names: list, **kwargs: Any):
        image = find_image(self, image_id) if image_id else None
        if image is None and image_id and _image_exists_anywhere(image_id, self.region_name):
            raise InvalidAMIIdError([image_id])
        snapshots_by_device: dict[str, str | None] = {}
        if image is not None:
            kwargs["block_device_mappings"], snapshots_by_device = _merged_mappings(
                self, image, kwargs.get("block_device_mappings") or []
            )

        reservation = original(self, image_id, count, user_data, security_group_names, **kwargs)
        for instance in reservation.instances:
            _settle_new_instance(self, instance, image, snapshots_by_device)
        return reservation

    return run_instances


def _merged_mappings(backend: Any, image: Ami, requested: list[dict]) -> tuple[list[dict], dict[str, str | None]]:
    """The image's mappings overridden by the request's, with sizes and keys resolved for moto's volume code."""
    overrides = {mapping["DeviceName"]: mapping for mapping in requested}
    merged, sources = [], {}
    for disk in image_disks(image):
        override = overrides.pop(disk.device_name, None) or {"Ebs": {}}
        if override.get("NoDevice") == "":
            continue
        snapshot = image.ec2_backend.snapshots.get(disk.snapshot_id)
        merged.append(_volume_request(backend, disk.device_name, override["Ebs"], snapshot, disk))
        sources[disk.device_name] = disk.snapshot_id
    for device_name, override in overrides.items():
        if override.get("NoDevice") == "":
            continue
        snapshot_id = override["Ebs"].get("SnapshotId")
        snapshot = _snapshot_visible_to(backend, snapshot_id) if snapshot_id else None
        merged.append(_volume_request(backend, device_name, override["Ebs"], snapshot, None))
        sources[device_name] = snapshot_id
    return merged, sources


def _snapshot_visible_to(backend: Any, snapshot_id: str) -> Snapshot | None:
    own = backend.snapshots.get(snapshot_id)
    return own if own is not None else next((s for s in _shared_snapshots(backend) if s.id == snapshot_id), None)


def _volume_request(backend: Any, device_name: str, ebs: dict, snapshot: Snapshot | None,
                    disk: ImageDisk | None) -> dict:
    requested_key = ebs.get("KmsKeyId")
    wants_encryption = _truthy(ebs.get("Encrypted"))
    if ebs.get("Encrypted") is not None and not wants_encryption and snapshot is not None and snapshot.encrypted:
        # NOTE: AWS documents that encryption is never removed, not the code of the refusal; this is EC2's
        # code for a mapping it will not build.
        raise EC2ClientError("InvalidBlockDeviceMapping",
                             f"Encrypted false cannot remove the encryption of {device_name}: its snapshot "
                             f"{snapshot.id} is encrypted")
    if requested_key and not wants_encryption:
        raise InvalidParameterDependency("KmsKeyId", "Encrypted")
    if requested_key:
        key = key_arn(requested_key, backend.account_id, backend.region_name)
    elif snapshot is not None and snapshot.encrypted:
        key = snapshot.kms_key_id
    elif wants_encryption:
        key = backend._create_default_encryption_key()
    else:
        key = None
    delete = ebs.get("DeleteOnTermination")
    if delete is None:
        delete = disk.delete_on_termination if disk else True
    return {
        "DeviceName": device_name,
        "Ebs": {
            "VolumeSize": int(ebs.get("VolumeSize") or (disk.size if disk else _size_of(snapshot))),
            "VolumeType": ebs.get("VolumeType") or (disk.volume_type if disk else None),
            "DeleteOnTermination": bool(delete),
            "Encrypted": key is not None,
            "KmsKeyId": key,
            # Left out so moto's volume code does not look the snapshot up in the launching account.
            "SnapshotId": None,
        },
    }


def _size_of(snapshot: Snapshot | None) -> int:
    if snapshot is None:
        # NOTE: AWS refuses a new device with neither size nor snapshot; the sandbox gives it moto's 8 GiB.
        return 8
    return snapshot.volume_size


def _settle_new_instance(backend: Any, instance: Instance, image: Ami | None, sources: dict[str, str | None]) -> None:
    if image is not None:
        instance.root_device_name = image.root_device_name
        instance.platform = instance.platform or image.platform
    keys_ok = True
    for device_name, mapping in instance.get_block_device_mapping:
        volume = backend.volumes[mapping.volume_id]
        if device_name in sources:
            volume.snapshot_id = sources[device_name]
        keys_ok = keys_ok and key_usable(volume.kms_key_id, backend.account_id, backend.region_name, use="write")
    for source_key in _source_keys(image):
        keys_ok = keys_ok and key_usable(source_key, backend.account_id, backend.region_name)
    if not keys_ok:
        instance.terminate()
        instance.state_reason = StateReason("Client.InternalError: Client error on launch", "Client.InternalError")
        instance._reason = "Server.InternalError"
    elif not getattr(_service_launch, "active", False):
        _boot(instance)


# An instance another service launches (MGN's cutover instance) boots within that service's own duration.
_service_launch = threading.local()


@contextmanager
def launched_by_service() -> Iterator[None]:
    """RunInstances calls in the block come from a service whose own duration covers the boot."""
    _service_launch.active = True
    try:
        yield
    finally:
        _service_launch.active = False


def _boot(instance: Instance) -> None:
    start = clock.now()
    instance.sandbox_running_at = start + pacing.instance_boot_seconds
    instance.sandbox_checks_ok_at = instance.sandbox_running_at + pacing.status_check_seconds
    clock.record("RunInstances (to running)", start, instance.sandbox_running_at)
    clock.record("Status checks", instance.sandbox_running_at, instance.sandbox_checks_ok_at)
    if pacing.instance_boot_seconds > 0:
        instance._state = InstanceState("pending", 0)


def _source_keys(image: Ami | None) -> list[str]:
    if image is None:
        return []
    return [snapshot.kms_key_id for snapshot in image_snapshots(image) if snapshot.encrypted]


class InstancesStartPending(Rule):
    """A launched instance is pending until it has booted, then running with both status checks initializing
    until they pass, then ok (`pacing`: instance boot and status check seconds).

    moto starts instances running with both checks ok at once. An instance is seen to change when a
    DescribeInstances or DescribeInstanceStatus call includes it.
    """

    def replacements(self):
        yield InstanceResponse, "describe_instances", _observing_instances
        yield InstanceResponse, "describe_instance_status", _observing_instance_statuses
        yield Instance, "instance_status", lambda original: property(_checks_while_initializing(original))
        yield Instance, "system_status", lambda original: property(_checks_while_initializing(original))


def _observe_instance(instance: Instance) -> None:
    if instance.state == "pending" and clock.now() >= getattr(instance, "sandbox_running_at", math.inf):
        instance._state = InstanceState("running", 16)


def _observing_instances(original: Callable) -> Callable:
    def describe(self) -> ActionResult:
        ids = self._get_param("InstanceIds", [])
        for instance in self.ec2_backend.all_instances():
            if not ids or instance.id in ids:
                _observe_instance(instance)
        return original(self)

    return describe


def _observing_instance_statuses(original: Callable) -> Callable:
    def describe(self) -> ActionResult:
        ids = self._get_param("InstanceIds", [])
        for instance in self.ec2_backend.all_instances():
            if not ids or instance.id in ids:
                _observe_instance(instance)
        return original(self)

    return describe


def _checks_while_initializing(original: property) -> Callable:
    def status(self: Instance) -> dict[str, Any]:
        if self.state_code == 16 and clock.now() < getattr(self, "sandbox_checks_ok_at", 0.0):
            return {"Details": [{"Name": "reachability", "Status": "initializing"}], "Status": "initializing"}
        return original.fget(self)

    return status


class AwsManagedKeysStayHome(Rule):
    """The AWS managed EBS key reports KeyManager AWS, and what it encrypts cannot be shared.

    AWS refuses ModifyImageAttribute adding an account to an image with snapshots under the AWS managed
    key (InvalidParameter) and ModifySnapshotAttribute adding one to such a snapshot (OperationNotPermitted).
    moto makes alias/aws/ebs a customer managed key and shares anything.
    """

    def replacements(self):
        yield EBSBackend, "_create_default_encryption_key", _marking_aws_managed_ebs_key
        yield KmsBackend, "_generate_default_keys", _marking_aws_managed_default_keys
        yield AmiBackend, "modify_image_attribute", _refusing_to_share_aws_managed_images
        yield EBSBackend, "add_create_volume_permission", _refusing_to_share_aws_managed_snapshots


def _marking_aws_managed_ebs_key(original: Callable) -> Callable:
    def create(self) -> str:
        arn = original(self)
        key = kms_backends[self.account_id][self.region_name].keys[arn.split(":key/")[1]]
        key.key_manager = "AWS"
        return arn

    return create


def _marking_aws_managed_default_keys(original: Callable) -> Callable:
    def generate(self, alias_name: str) -> str | None:
        key_id = original(self, alias_name)
        if key_id:
            self.keys[key_id].key_manager = "AWS"
        return key_id

    return generate


def _refusing_to_share_aws_managed_images(original: Callable) -> Callable:
    def modify(self, ami_id: str, launch_permissions_to_add: list, launch_permissions_to_remove: list) -> None:
        ami = self.describe_images(ami_ids=[ami_id])[0]
        sharing = any("UserId" in permission for permission in launch_permissions_to_add)
        if sharing and any(is_aws_managed(s.kms_key_id, self.region_name) for s in image_snapshots(ami)):
            raise EC2ClientError("InvalidParameter", "Snapshots encrypted with the AWS Managed CMK can't be shared. "
                                 "Specify another snapshot.")
        return original(self, ami_id, launch_permissions_to_add, launch_permissions_to_remove)

    return modify


def _refusing_to_share_aws_managed_snapshots(original: Callable) -> Callable:
    def add(self, snapshot_id: str, user_ids: list, groups: list) -> None:
        snapshot = self.get_snapshot(snapshot_id)
        if user_ids and is_aws_managed(snapshot.kms_key_id, self.region_name):
            raise EC2ClientError("OperationNotPermitted", "Encrypted snapshots with EBS default key cannot be shared")
        return original(self, snapshot_id, user_ids=user_ids, groups=groups)

    return add


class DeregisterImageCanDeleteSnapshots(Rule):
    """DeregisterImage(DeleteAssociatedSnapshots=True) deletes the image's snapshots in the same call.

    moto ignores the parameter and leaves the snapshots behind, as AWS does without it.
    """

    def replacements(self):
        yield AmisResponse, "deregister_image", lambda original: _deregister_image


def _deregister_image(self: AmisResponse) -> ActionResult:
    image_id = self._get_param("ImageId")
    delete_snapshots = _truthy(self._get_param("DeleteAssociatedSnapshots", False))
    self.error_on_dryrun()
    backend = self.ec2_backend
    ami = backend.amis.get(image_id)
    snapshot_ids = [snapshot.id for snapshot in image_snapshots(ami)] if ami is not None else []
    backend.deregister_image(image_id)

    result: dict[str, Any] = {"Return": True}
    if delete_snapshots:
        for snapshot_id in snapshot_ids:
            backend.snapshots.pop(snapshot_id, None)
        result["DeleteSnapshotResults"] = [{"SnapshotId": s, "ReturnCode": "success"} for s in snapshot_ids]
    return ActionResult(result)


class ManagedInstancesRegister(Rule):
    """SSM sees a running instance as a managed instance once its agent checks in, and only then runs commands on it.

    An instance qualifies when it runs with an instance profile whose role has AmazonSSMManagedInstanceCore;
    it shows in DescribeInstanceInformation (moto has none) with PingStatus Online after
    `pacing.ssm_registration_seconds` of running, and ConnectionLost once stopped. SendCommand to an instance
    that is not an online managed instance fails with InvalidInstanceId, as in AWS; moto also adds every
    instance of the account to a command sent without Targets, which AWS does not.
    Documents, parameters and how long a command takes are SsmCommandsLikeRunCommand's.
    """

    def replacements(self):
        yield SimpleSystemManagerResponse, "describe_instance_information", lambda original: _describe_instance_info
        yield SimpleSystemManagerBackend, "send_command", _send_command_to_managed_only
        yield Command, "_get_instance_ids_from_targets", _targets_only_when_given


def _describe_instance_info(self: SimpleSystemManagerResponse) -> ActionResult:
    wanted = _instance_information_filters(
        self._get_param("InstanceInformationFilterList", []), self._get_param("Filters", [])
    )
    backend = ec2_backend(self.current_account, self.region)
    listed = [_information(instance) for instance in _check_in(backend)]
    listed = [item for item in listed if all(item.get(field) in values for field, values in wanted.items())]

    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or 50)
    page: dict[str, Any] = {"InstanceInformationList": listed[start:start + size]}
    if start + size < len(listed):
        page["NextToken"] = str(start + size)
    return ActionResult(page)


_FILTER_FIELDS = {
    "InstanceIds": "InstanceId",
    "PingStatus": "PingStatus",
    "ResourceType": "ResourceType",
    "PlatformTypes": "PlatformType",
}


def _instance_information_filters(old_style: list[dict], new_style: list[dict]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    pairs = [(f["key"], f["valueSet"]) for f in old_style] + [(f["Key"], f["Values"]) for f in new_style]
    for key, values in pairs:
        if key not in _FILTER_FIELDS:
            # NOTE: AWS also filters on AgentVersion, IamRole, tags and more; the sandbox only needs these.
            raise InvalidFilterKey(f"The filter key {key} is not supported by the sandbox")
        wanted[_FILTER_FIELDS[key]] = values
    return wanted


def _check_in(backend: Any) -> list[Instance]:
    """One DescribeInstanceInformation call: the qualifying agents that have checked in by now, registered."""
    registered = []
    for instance in backend.all_instances():
        _observe_instance(instance)
        if instance.state == "running" and _has_ssm_role(backend.account_id, instance):
            # An instance running since before the sandbox's rules (a service launched it) registers at once.
            due = getattr(instance, "sandbox_running_at", -math.inf) + pacing.ssm_registration_seconds
            if clock.now() >= due and not hasattr(instance, "sandbox_ssm_registered"):
                instance.sandbox_ssm_registered = utcnow()
                if hasattr(instance, "sandbox_running_at"):
                    clock.record("SSM registration", instance.sandbox_running_at, due)
        if hasattr(instance, "sandbox_ssm_registered") and instance.state != "terminated":
            registered.append(instance)
    return registered


def _has_ssm_role(account_id: str, instance: Instance) -> bool:
    profile_arn = (instance.iam_instance_profile or {}).get("Arn")
    if not profile_arn:
        return False
    iam = iam_backends[account_id]["aws"]
    profile = next((p for p in iam.instance_profiles.values() if p.arn == profile_arn), None)
    return profile is not None and any(SSM_CORE_POLICY_ARN in role.managed_policies for role in profile.roles)


def _information(instance: Instance) -> dict[str, Any]:
    windows = (instance.platform or "").lower() == "windows"
    profile_arn = instance.iam_instance_profile["Arn"]
    profile = next(p for p in iam_backends[instance.owner_id]["aws"].instance_profiles.values() if p.arn == profile_arn)
    return {
        "InstanceId": instance.id,
        "PingStatus": "Online" if instance.state == "running" else "ConnectionLost",
        "LastPingDateTime": utcnow(),
        "AgentVersion": "3.3.1142.0",
        "IsLatestVersion": True,
        "PlatformType": "Windows" if windows else "Linux",
        "PlatformName": "Microsoft Windows Server 2022 Datacenter" if windows else "Amazon Linux",
        "PlatformVersion": "10.0.20348" if windows else "2023",
        "IamRole": profile.roles[0].name if profile.roles else "",
        "RegistrationDate": instance.sandbox_ssm_registered,
        "ResourceType": "EC2Instance",
        "IPAddress": instance.private_ip_address,
        "ComputerName": instance.private_dns_name,
        "SourceId": instance.id,
        "SourceType": "AWS::EC2::Instance",
    }


def managed_instance_online(account_id: str, region: str, instance_id: str) -> bool:
    backend = ec2_backend(account_id, region)
    instance = next((i for i in backend.all_instances() if i.id == instance_id), None)
    return instance is not None and instance.state == "running" and hasattr(instance, "sandbox_ssm_registered")


class InvalidInstanceId(ServiceException):
    """SSM's refusal of a command for an instance that is not an online managed instance."""

    code = "InvalidInstanceId"


def _send_command_to_managed_only(original: Callable) -> Callable:
    def send_command(self, *args: Any, **kwargs: Any) -> Command:
        instance_ids = kwargs.get("instance_ids") or []
        strays = [i for i in instance_ids if not managed_instance_online(self.account_id, self.region_name, i)]
        if strays:
            raise InvalidInstanceId(f"Instances [{strays}] not in a valid state for account {self.account_id}")
        return original(self, *args, **kwargs)

    return send_command


def _targets_only_when_given(original: Callable) -> Callable:
    def from_targets(self) -> list[str]:
        return original(self) if self.targets else []

    return from_targets


class Ec2ChecksItsArguments(Rule):
    """CreateImage and CopyImage check the AMI name; RunInstances checks the network placement and the profile.

    Like AWS: an AMI name is 3 to 128 characters of letters, digits, spaces and ( ) [ ] . / - ' @ _
    (InvalidAMIName.Malformed). RunInstances refuses a subnet that does not exist (InvalidSubnetID.NotFound,
    moto's own), security groups of another VPC than the subnet's (InvalidParameter), a private IP outside
    the subnet's range (InvalidParameterValue) or already in use (InvalidIPAddress.InUse), and an instance
    profile that does not exist (InvalidParameterValue; moto answers IAM's NoSuchEntity, or raises a bare
    exception for the addresses).
    """

    def replacements(self):
        yield AmiBackend, "create_image", _checking_image_name(1)
        yield AmiBackend, "copy_image", _checking_image_name(2)
        yield InstanceBackend, "run_instances", _checking_placement
        yield moto_instance_responses, "filter_iam_instance_profiles", _profile_known_to_ec2


_AMI_NAME = re.compile(r"[A-Za-z0-9 ()\[\]./\-'@_]{3,128}")


def check_image_name(name: str | None) -> None:
    if name is not None and not _AMI_NAME.fullmatch(name):
        raise EC2ClientError(
            "InvalidAMIName.Malformed",
            "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, spaces, "
            "'(', ')', '[', ']', '.', '/', '-', apostrophes, '@' and '_'",
        )


def _checking_image_name(position: int) -> Callable[[Callable], Callable]:
    def factory(original: Callable) -> Callable:
        def call(self, *args: Any, **kwargs: Any) -> Any:
            name = kwargs.get("name", args[position] if len(args) > position else None)
            check_image_name(name)
            return original(self, *args, **kwargs)

        return call

    return factory


def _checking_placement(original: Callable) -> Callable:
    def run_instances(self, image_id: str, count: int, user_data: Any, security_group_names: list, **kwargs: Any):
        subnet_id = kwargs.get("subnet_id")
        subnet = self.get_subnet(subnet_id) if subnet_id else None
        if subnet is not None:
            _check_groups_in_vpc(self, subnet, kwargs.get("security_group_ids") or [])
            if kwargs.get("private_ip"):
                _check_private_ip(self, subnet, kwargs["private_ip"])
        return original(self, image_id, count, user_data, security_group_names, **kwargs)

    return run_instances


def _check_groups_in_vpc(backend: Any, subnet: Any, group_ids: list[str]) -> None:
    for group_id in group_ids:
        group = backend.get_security_group_from_id(group_id)
        if group is not None and group.vpc_id != subnet.vpc_id:
            raise EC2ClientError("InvalidParameter",
                                 f"Security group {group_id} and subnet {subnet.id} belong to different networks.")


def _check_private_ip(backend: Any, subnet: Any, address: str) -> None:
    if ipaddress.ip_address(address) not in ipaddress.ip_network(subnet.cidr_block):
        raise EC2ClientError("InvalidParameterValue",
                             f"Address {address} does not fall within the subnet's address range")
    in_use = any(instance.private_ip == address and instance.subnet_id == subnet.id and instance.state != "terminated"
                 for instance in backend.all_instances())
    if in_use:
        raise EC2ClientError("InvalidIPAddress.InUse", f"Address {address} is in use.")


def _profile_known_to_ec2(original: Callable) -> Callable:
    def find(account_id: str, partition: str, iam_instance_profile_arn: str | None = None,
             iam_instance_profile_name: str | None = None) -> Any:
        profiles = list(iam_backends[account_id][partition].instance_profiles.values())
        if any(p.name == iam_instance_profile_name or p.arn == iam_instance_profile_arn for p in profiles):
            return original(account_id, partition=partition, iam_instance_profile_arn=iam_instance_profile_arn,
                            iam_instance_profile_name=iam_instance_profile_name)
        parameter, value = (("iamInstanceProfile.name", iam_instance_profile_name) if iam_instance_profile_name
                            else ("iamInstanceProfile.arn", iam_instance_profile_arn))
        kind = "name" if iam_instance_profile_name else "ARN"
        raise EC2ClientError("InvalidParameterValue", f"Value ({value}) for parameter {parameter} is invalid. "
                             f"Invalid IAM Instance Profile {kind}")

    return find


class SsmCommandsLikeRunCommand(Rule):
    """SendCommand checks the document and its parameters; a command takes time, and can fail.

    Like AWS: a document that neither AWS nor the account owns is InvalidDocument; a parameter the document
    does not define, or a required one left out, is InvalidParameters. GetCommandInvocation answers
    InvocationDoesNotExist for `pacing.command_start_seconds` after SendCommand, then InProgress for
    `pacing.command_seconds`, then Success, or Failed with the agent's error output for a
    document the world makes fail. moto accepts any document and finishes every command Success at once.
    NOTE: only the AWS-owned documents the pipeline sends (and the two shell ones) are known, with the
    parameters their documentation lists.
    """

    def replacements(self):
        yield SimpleSystemManagerBackend, "send_command", _checking_documents
        yield Command, "get_invocation", _invocation_over_time


# Parameters of the AWS-owned documents: name -> whether it is required.
AWS_DOCUMENTS = {
    "AWS-ConfigureAWSPackage": {"action": True, "installationType": False, "name": True, "version": False,
                                "additionalArguments": False},
    "AmazonCloudWatch-ManageAgent": {"action": True, "mode": False, "optionalConfigurationSource": False,
                                     "optionalConfigurationLocation": False, "optionalRestart": False,
                                     "optionalOpenTelemetryCollectorConfigurationSource": False,
                                     "optionalOpenTelemetryCollectorConfigurationLocation": False},
    "AWS-RunShellScript": {"commands": True, "workingDirectory": False, "executionTimeout": False},
    "AWS-RunPowerShellScript": {"commands": True, "workingDirectory": False, "executionTimeout": False},
}


class InvalidDocument(ServiceException):
    """SSM's refusal of a command for a document that does not exist."""

    code = "InvalidDocument"


class InvalidParameters(ServiceException):
    """SSM's refusal of a command whose parameters do not fit its document."""

    code = "InvalidParameters"


def _checking_documents(original: Callable) -> Callable:
    def send_command(self, *args: Any, **kwargs: Any) -> Command:
        name = kwargs.get("document_name")
        parameters = kwargs.get("parameters") or {}
        defined = AWS_DOCUMENTS.get(name)
        if defined is None and name in self._documents:
            version = self._documents[name].get_default_version()
            defined = {p["name"]: "default" not in p for p in (version.parameter_list or [])}
        if defined is None:
            raise InvalidDocument(f"Document {name} does not exist in account {self.account_id}")
        unknown = sorted(set(parameters) - set(defined))
        missing = sorted(p for p, required in defined.items() if required and not parameters.get(p))
        if unknown or missing:
            raise InvalidParameters("You must specify values for all required parameters in the Systems Manager "
                                    "document. You can only supply values to parameters defined in the Systems "
                                    f"Manager document. (not defined: {unknown}; missing: {missing})")
        command = original(self, *args, **kwargs)
        sent = clock.now()
        started = sent + pacing.command_start_seconds
        done = started + pacing.command_seconds
        command.sandbox_timing = (started, done, pacing.command_failures.get(name))
        clock.record(f"SSM command {name}", sent, done)
        return command

    return send_command


def _invocation_over_time(original: Callable) -> Callable:
    def get_invocation(self: Command, instance_id: str, plugin_name: str | None) -> dict[str, Any]:
        started, done, failure = getattr(self, "sandbox_timing", (-math.inf, -math.inf, None))
        now = clock.now()
        if now < started:
            raise RESTError("InvocationDoesNotExist", "An error occurred (InvocationDoesNotExist) when calling the "
                            "GetCommandInvocation operation")
        invocation = original(self, instance_id, plugin_name)
        if now < done:
            return {**invocation, "Status": "InProgress", "StatusDetails": "InProgress"}
        if failure is not None and invocation.get("Status") == "Success":
            invocation.update(Status="Failed", StatusDetails="Failed", ResponseCode=1, StandardErrorContent=failure)
            self.status = self.status_details = "Failed"
        return invocation

    return get_invocation


class AssumeRoleFollowsTrustPolicy(Rule):
    """AssumeRole into an existing role is refused (403 AccessDenied) unless the role's trust policy admits the
    caller: an Allow statement for sts:AssumeRole whose Principal names the caller (its ARN, or its account's
    root or id, which admits every principal of that account) and whose Condition holds for the request
    (sts:ExternalId, aws:PrincipalArn, aws:PrincipalAccount).

    The caller is the principal set with `acting_as` (the sandbox runs every Lambda function as its role), else
    the one moto ties to the request's access key. moto lets anyone assume any role.
    NOTE: a role that does not exist can still be assumed, which moto's account switching relies on; Deny
    statements and the caller's own IAM policy are left to the IAM evaluation, not checked here.
    """

    def replacements(self):
        yield TokenResponse, "assume_role", _checking_trust


_acting = threading.local()
# Who a request made with plain (not assumed) migration-account credentials comes from; a World sets it.
_default_principal: list[str | None] = [None]


def set_default_principal(principal_arn: str | None) -> None:
    _default_principal[0] = principal_arn


@contextmanager
def acting_as(principal_arn: str | None) -> Iterator[None]:
    """Calls made in this block (on this thread) come from `principal_arn`, an IAM role or user ARN."""
    previous = getattr(_acting, "principal", None)
    _acting.principal = principal_arn
    try:
        yield
    finally:
        _acting.principal = previous


def calling_principal(response: Any) -> tuple[str, str]:
    """(IAM ARN, ARN as AWS names the caller in errors) of the principal making the request."""
    acting = getattr(_acting, "principal", None)
    if acting:
        return acting, _session_arn(acting)
    account = response.current_account
    _, arn, _ = sts_backends[account]["global"].get_caller_identity(response.get_access_key(), response.region)
    if arn.endswith(":user/moto") and _default_principal[0]:
        # moto's stand-in identity for credentials it did not issue: in a world, the pipeline's own.
        return _default_principal[0], _session_arn(_default_principal[0])
    match = re.match(r"arn:([^:]+):sts::(\d{12}):assumed-role/([^/]+)/", arn)
    if match:
        role = _existing_role(f"arn:{match[1]}:iam::{match[2]}:role/{match[3]}")
        return (role.arn if role is not None else f"arn:{match[1]}:iam::{match[2]}:role/{match[3]}"), arn
    return arn.replace(":sts::", ":iam::", 1), arn


def _session_arn(principal_arn: str) -> str:
    parts = principal_arn.split(":")
    if len(parts) == 6 and parts[5].startswith("role/"):
        name = parts[5].rsplit("/", 1)[-1]
        return f"arn:{parts[1]}:sts::{parts[4]}:assumed-role/{name}/{name}"
    return principal_arn


def _checking_trust(original: Callable) -> Callable:
    def assume_role(self: TokenResponse) -> ActionResult:
        role_arn = self._get_param("RoleArn")
        role = _existing_role(role_arn)
        if role is not None:
            principal, shown = calling_principal(self)
            if not trust_admits(role.assume_role_policy_document, principal, self._get_param("ExternalId")):
                raise AccessDeniedError(shown, f"sts:AssumeRole on resource: {role_arn}")
        return original(self)

    return assume_role


def _existing_role(role_arn: str) -> Any:
    parts = (role_arn or "").split(":")
    if len(parts) < 6 or not parts[5].startswith("role/"):
        return None
    account_id, name = parts[4], parts[5].rsplit("/", 1)[-1]
    iam = dict.get(iam_backends, account_id)
    if iam is None:
        return None
    return next((role for role in list(iam["aws"].roles.values()) if role.name == name), None)


def trust_admits(document: str, principal_arn: str, external_id: str | None) -> bool:
    """Whether a role trust policy lets `principal_arn` assume the role with this external id."""
    try:
        statements = _as_list(json.loads(document).get("Statement", []))
    except (TypeError, ValueError):
        return False
    account = principal_arn.split(":")[4] if principal_arn.count(":") >= 5 else ""
    context = {"aws:principalarn": principal_arn, "aws:principalaccount": account}
    if external_id is not None:
        context["sts:externalid"] = external_id
    for statement in statements:
        actions = _as_list(statement.get("Action", []))
        if statement.get("Effect") != "Allow" or not any(fnmatch.fnmatchcase("sts:AssumeRole", a) for a in actions):
            continue
        if _trusts(statement.get("Principal"), principal_arn, account) and conditions_hold(
                statement.get("Condition", {}), context):
            return True
    return False


def _trusts(principal: Any, principal_arn: str, account: str) -> bool:
    for trusted in _aws_principals(principal):
        if trusted in ("*", account, principal_arn) or trusted == f"arn:aws:iam::{account}:root":
            return True
    return False


class KeyPairsOnlyWhenUsed(Rule):
    """Not an AWS behaviour but a speed fix: moto makes an RSA key pair for every KMS key, symmetric ones too.

    Generating it takes about 80 ms a key; the pair is now made the first time a key signs or verifies.
    """

    def replacements(self):
        yield moto_kms_models, "generate_private_key", lambda original: lambda spec: _LazyKeyPair(original, spec)


class TagsLookedUpByResource(Rule):
    """Not an AWS behaviour but a speed fix: moto finds one EC2 resource's tags by matching a pattern against
    every tag of the account, for every resource it describes, so a describe call grew with the square of the
    account's size. The same tags, in the same order, are read straight from the resource's entry."""

    def replacements(self):
        from moto.ec2.models.core import TaggedEC2Resource

        yield TaggedEC2Resource, "get_tags", lambda original: _tags_of_resource


def _tags_of_resource(self: Any) -> list[dict[str, str]]:
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    if not self.id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
    return [{"resource_id": self.id, "key": key, "value": value, "resource_type": kind}
            for key, value in dict(self.ec2_backend.tags.get(self.id, {})).items()]


class ResponseMethodsListedOnce(Rule):
    """Not an AWS behaviour but a speed fix: moto lists a response class's methods (inspect.getmembers, about
    a millisecond) on every request it answers; a class's methods do not change, so each is listed once."""

    def replacements(self):
        from moto.core import responses as moto_responses

        yield moto_responses, "method_names_from_class", _listed_once


def _listed_once(original: Callable[[type], list[str]]) -> Callable[[type], list[str]]:
    listed: dict[type, list[str]] = {}

    def method_names(clazz: type) -> list[str]:
        if clazz not in listed:
            listed[clazz] = original(clazz)
        return list(listed[clazz])

    return method_names


class _LazyKeyPair:
    def __init__(self, generate: Callable[[str], Any], key_spec: str):
        self._generate, self._key_spec, self._pair = generate, key_spec, None

    def __getattr__(self, name: str) -> Any:
        if self._pair is None:
            self._pair = self._generate(self._key_spec)
        return getattr(self._pair, name)


RULES: list[Rule] = [
    ImagesVisibleWhereShared(),
    SnapshotsVisibleWhereShared(),
    CreateImageSnapshotsEveryVolume(),
    CopyImageAcrossAccountsAndKeys(),
    LaunchFromImageDisks(),
    InstancesStartPending(),
    AwsManagedKeysStayHome(),
    DeregisterImageCanDeleteSnapshots(),
    ManagedInstancesRegister(),
    Ec2ChecksItsArguments(),
    SsmCommandsLikeRunCommand(),
    AssumeRoleFollowsTrustPolicy(),
    KeyPairsOnlyWhenUsed(),
    TagsLookedUpByResource(),
    ResponseMethodsListedOnce(),
]
