"""The per-server ledger: which execution holds a source server, and what it has created.

One DynamoDB item per source server. The claim makes two executions naming one server run
one cutover; the artifact map lets rollback and cleanup find everything that was created,
and lets a later execution pick up what an earlier one finished.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from pipeline import aws, clock, config
from pipeline.errors import ServerClaimed

CLAIMED = "CLAIMED"
RELEASED = "RELEASED"


def _table():
    return aws.client("dynamodb"), config.ledger_table()


def claim(source_server_id: str, execution: str, wave: str) -> dict[str, Any]:
    """Claim the server for `execution`; claiming it again from the same execution is a no-op."""
    dynamodb, table = _table()
    try:
        item = dynamodb.update_item(
            TableName=table,
            Key={"sourceServerId": {"S": source_server_id}},
            UpdateExpression="SET holder = :me, claimStatus = :claimed, wave = :wave, claimedAt = :now",
            ConditionExpression="attribute_not_exists(holder) OR holder = :me OR claimStatus = :released",
            ExpressionAttributeValues={
                ":me": {"S": execution},
                ":claimed": {"S": CLAIMED},
                ":released": {"S": RELEASED},
                ":wave": {"S": wave},
                ":now": {"N": str(int(clock.now()))},
            },
            ReturnValues="ALL_NEW",
        )["Attributes"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        raise ServerClaimed(source_server_id, holder(source_server_id) or "unknown") from None
    return artifacts_of(item)


def release(source_server_id: str, execution: str, outcome: str) -> None:
    """Release the claim if `execution` holds it; releasing twice is a no-op."""
    dynamodb, table = _table()
    try:
        dynamodb.update_item(
            TableName=table,
            Key={"sourceServerId": {"S": source_server_id}},
            UpdateExpression="SET claimStatus = :released, outcome = :outcome, releasedAt = :now",
            ConditionExpression="holder = :me",
            ExpressionAttributeValues={
                ":me": {"S": execution},
                ":released": {"S": RELEASED},
                ":outcome": {"S": outcome},
                ":now": {"N": str(int(clock.now()))},
            },
        )
    except ClientError as err:
        if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def record(source_server_id: str, execution: str, name: str, value: str) -> None:
    """Record an artifact (an image id, a grant id, ...) under the claim of `execution`."""
    dynamodb, table = _table()
    dynamodb.update_item(
        TableName=table,
        Key={"sourceServerId": {"S": source_server_id}},
        UpdateExpression="SET artifacts = if_not_exists(artifacts, :empty)",
        ExpressionAttributeValues={":empty": {"M": {}}},
    )
    dynamodb.update_item(
        TableName=table,
        Key={"sourceServerId": {"S": source_server_id}},
        UpdateExpression="SET artifacts.#name = :value",
        ConditionExpression="holder = :me",
        ExpressionAttributeNames={"#name": name},
        ExpressionAttributeValues={":value": {"S": value}, ":me": {"S": execution}},
    )


def forget(source_server_id: str, execution: str, *names: str) -> None:
    """Drop artifacts once they no longer exist (after cleanup or rollback removed them)."""
    if not names:
        return
    dynamodb, table = _table()
    placeholders = {f"#a{index}": name for index, name in enumerate(names)}
    dynamodb.update_item(
        TableName=table,
        Key={"sourceServerId": {"S": source_server_id}},
        UpdateExpression="REMOVE " + ", ".join(f"artifacts.{p}" for p in placeholders),
        ConditionExpression="holder = :me AND attribute_exists(artifacts)",
        ExpressionAttributeNames=placeholders,
        ExpressionAttributeValues={":me": {"S": execution}},
    )


def holder(source_server_id: str) -> str | None:
    item = read(source_server_id)
    if item and item.get("claimStatus") == CLAIMED:
        return item.get("holder")
    return None


def read(source_server_id: str) -> dict[str, Any] | None:
    dynamodb, table = _table()
    item = dynamodb.get_item(
        TableName=table, Key={"sourceServerId": {"S": source_server_id}}, ConsistentRead=True
    ).get("Item")
    if not item:
        return None
    plain = {key: value.get("S", value.get("N")) for key, value in item.items() if key != "artifacts"}
    plain["artifacts"] = artifacts_of(item)
    return plain


def artifacts_of(item: dict[str, Any]) -> dict[str, str]:
    return {name: value["S"] for name, value in item.get("artifacts", {}).get("M", {}).items()}
