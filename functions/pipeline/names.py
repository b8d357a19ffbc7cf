"""Deterministic names, tags and idempotency tokens.

A retried step must find what its earlier attempt created instead of creating a second one:
every resource is named from the source server and the cutover instance it came from, and
every API that takes a ClientToken gets one derived from the same inputs.
"""

from __future__ import annotations

import hashlib

MANAGED_TAG = "mgn-cutover:managed"
SERVER_TAG = "mgn-cutover:source-server"
EXECUTION_TAG = "mgn-cutover:execution"
STAGE_TAG = "mgn-cutover:stage"

# The stages an image of a server passes through, in order.
CUTOVER_IMAGE = "image"
SHARING_COPY = "sharing-copy"
TARGET_COPY = "target-copy"


def image_name(source_server_id: str, cutover_instance_id: str, stage: str) -> str:
    # EC2 allows letters, digits, spaces and ()[] ./-'@_ in AMI names, 3 to 128 characters.
    return f"mgn-cutover {source_server_id} {stage} {cutover_instance_id}"


def client_token(*parts: str) -> str:
    """A token of at most 64 ASCII characters, the same for the same parts."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:64]


def grant_name(source_server_id: str, account_id: str) -> str:
    # KMS makes CreateGrant idempotent for a retried request that names the same grant.
    return f"mgn-cutover-{source_server_id}-{account_id}"


def command_comment(source_server_id: str, action: str) -> str:
    """SendCommand has no token; the comment marks a command so a retry can find it."""
    return f"mgn-cutover {action} {source_server_id}"


def tags(source_server_id: str, execution: str, stage: str, extra: dict[str, str] | None = None) -> list[dict]:
    values = {MANAGED_TAG: "true", SERVER_TAG: source_server_id, EXECUTION_TAG: execution[:256], STAGE_TAG: stage}
    values.update(extra or {})
    return [{"Key": key, "Value": value} for key, value in values.items()]


def image_tag_specifications(source_server_id: str, execution: str, stage: str) -> list[dict]:
    """Tags for an image and its snapshots, set as they are created.

    The functions' IAM policies let them share and delete only snapshots carrying the managed
    tag, and allow tagging only at creation, so the snapshots must be tagged here.
    """
    values = tags(source_server_id, execution, stage)
    return [{"ResourceType": "image", "Tags": values}, {"ResourceType": "snapshot", "Tags": values}]
