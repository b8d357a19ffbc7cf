"""The approval gate before finalize: who is waiting, one notification per wave, and the answers.

With `options.approval.required`, each server's branch stops at Wait For Approval once its
restored instance is verified: the Await Approval function records the branch's task token here
and the branch waits until the token is answered, or its deadline passes. The approval table holds,
per execution (the wave's execution name):

- one item per source server: `status` WAITING, APPROVED or REJECTED with the token, the target
  account, the restored instance and its private IP; or `released` with the server's outcome, for
  a server whose branch ended without waiting (it failed, was refused, or was cut over before);
- one gate item (sort key `#gate`) that records the one approval notification.

The wave is ready for approval when every server of it has an item and at least one is waiting:
a server that fails before the gate is released (Release Server writes it out of the gate) and so
does not hold the notification back. Whoever completes the set, the last server to arrive or the
last one to be released, publishes the notification; a conditional write on the gate item makes
that happen once.

NOTE: a server whose Release Server step itself fails (Report Unreleased) is never written out of
the gate, so the others get no notification and their deadline rejects them: the failure is in the
report, and a wave is not finalized past a server nobody accounted for.

`pending`, `approve`, `reject` and `notified` are for the operator's command line and the
sandbox: they take a boto3 session (the migration account's) and the table name (the stack's
ApprovalTableName output), and work outside Lambda.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from pipeline import aws, clock, config, notify, state
from pipeline.errors import RequestInvalid
from pipeline.observability import logger

WAITING = "WAITING"
APPROVED = "APPROVED"
REJECTED = "REJECTED"
# The token was answered some other way, or its task timed out, before approve or reject came.
CLOSED = "CLOSED"
GATE = "#gate"
REJECTION_ERROR = "ApprovalRejected"
# Items outlive their execution by a week (DynamoDB's TTL removes them), long enough to look back.
RETENTION_SECONDS = 7 * 24 * 3600
# Step Functions refuses an answer to a token that is already answered, or whose task timed out.
_ALREADY_ANSWERED = frozenset({"TaskTimedOut", "TaskDoesNotExist"})
_MAX_APPROVER = 128
_MAX_REASON = 1024


def required(current: dict) -> bool:
    return bool(current.get("options", {}).get("approval", {}).get("required"))


# -- in the state machine --------------------------------------------------------------------------------------


def arrive(current: dict, token: str, table: str | None = None) -> dict:
    """Record that this server waits for approval with `token`; notify if the wave is now complete."""
    table = table or config.approval_table()
    restored = state.slot(current, "restored")
    now = int(clock.now())
    timeout = int(current["options"]["approval"]["timeoutSeconds"])
    # A retried task has a new token: the latest one is the one the branch waits on.
    aws.client("dynamodb").put_item(TableName=table, Item={
        "execution": {"S": state.execution(current)},
        "sourceServerId": {"S": state.source_server_id(current)},
        "wave": {"S": current["wave"]},
        "status": {"S": WAITING},
        "token": {"S": token},
        "targetAccountId": {"S": state.target_account(current)},
        "restoredInstanceId": {"S": restored.get("instanceId") or ""},
        "privateIpAddress": {"S": restored.get("privateIpAddress") or ""},
        "waitingSince": {"N": str(now)},
        "deadline": {"N": str(now + timeout)},
        "expiresAt": {"N": str(now + timeout + RETENTION_SECONDS)},
    })
    logger.info("Waiting for approval", restored_instance_id=restored.get("instanceId"), timeout_seconds=timeout)
    return {"waiting": True, "notified": _notify_if_complete(current, table)}


def withdraw(current: dict, outcome: str, table: str | None = None) -> bool:
    """Write a server whose branch ended out of the gate; True if that completed the wave and notified."""
    table = table or config.approval_table()
    now = int(clock.now())
    aws.client("dynamodb").update_item(
        TableName=table,
        Key=_key(state.execution(current), state.source_server_id(current)),
        UpdateExpression="SET released = :true, outcome = :outcome, wave = :wave,"
                         " expiresAt = if_not_exists(expiresAt, :expires)",
        ExpressionAttributeValues={":true": {"BOOL": True}, ":outcome": {"S": outcome},
                                   ":wave": {"S": current["wave"]},
                                   ":expires": {"N": str(now + RETENTION_SECONDS)}},
    )
    return _notify_if_complete(current, table)


def _notify_if_complete(current: dict, table: str) -> bool:
    execution, me = state.execution(current), state.source_server_id(current)
    items = _items(aws.client("dynamodb"), table, execution)
    servers = [item for key, item in items.items() if key != GATE]
    waiting = [item for item in servers if _waiting(item)]
    if len(servers) < int(current["waveSize"]) or not waiting:
        return False
    if not _claim_notification(table, execution, me):
        return False
    notify.publish(subject(current["wave"], len(waiting)), render(current["wave"], execution, waiting, servers),
                   {"wave": current["wave"], "outcome": "APPROVAL_NEEDED"})
    aws.client("dynamodb").update_item(TableName=table, Key=_key(execution, GATE),
                                       UpdateExpression="SET publishedAt = :now",
                                       ExpressionAttributeValues={":now": {"N": str(int(clock.now()))}})
    logger.info("Approval requested", waiting=len(waiting), servers=len(servers))
    return True


def _claim_notification(table: str, execution: str, me: str) -> bool:
    # Once per wave. The server that claimed it may publish again if its attempt failed before the
    # publish was recorded (a retried step), nobody else may.
    # NOTE: a step that fails between the publish and its record publishes twice when retried; SNS
    # standard topics have no deduplication to prevent it.
    now = int(clock.now())
    try:
        aws.client("dynamodb").update_item(
            TableName=table, Key=_key(execution, GATE),
            UpdateExpression="SET notifiedAt = :now, notifier = :me, expiresAt = :expires",
            ConditionExpression="attribute_not_exists(notifiedAt) OR (notifier = :me AND"
                                " attribute_not_exists(publishedAt))",
            ExpressionAttributeValues={":now": {"N": str(now)}, ":me": {"S": me},
                                       ":expires": {"N": str(now + RETENTION_SECONDS)}})
    except ClientError as err:
        if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return False
    return True


def subject(wave: str, ready: int) -> str:
    servers = "server" if ready == 1 else "servers"
    return f"Approval needed: {wave} — {ready} {servers} ready to finalize"[:99]


def render(wave: str, execution: str, waiting: list[dict], servers: list[dict]) -> str:
    """The approval notification as a person reads it: what is ready, what is not, how to answer."""
    rows = [("source server", "target account", "restored instance", "private IP")]
    rows += [(_text(i, "sourceServerId"), _text(i, "targetAccountId"), _text(i, "restoredInstanceId"),
              _text(i, "privateIpAddress") or "-") for i in sorted(waiting, key=lambda i: _text(i, "sourceServerId"))]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    table = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines = [f"Wave {wave} (execution {execution}) waits for approval before finalize, the point of no return.",
             "Each restored instance below runs and passed its status checks; MGN has not finalized any of them.",
             "", *table]
    out = sorted((i for i in servers if i.get("released", {}).get("BOOL") and not _answered(i)),
                 key=lambda i: _text(i, "sourceServerId"))
    if out:
        lines += ["", "Not in this approval (their branch already ended):"]
        lines += [f"  {_text(i, 'sourceServerId')}  {_text(i, 'outcome')}" for i in out]
    deadline = min(int(i["deadline"]["N"]) for i in waiting)
    lines += ["", f"A server not answered by its deadline is rolled back; the first deadline is {_iso(deadline)}.", "",
              "Approve (finalize every server above):",
              f"  ./scripts/cutover approve {execution}",
              "Reject (roll every server above back to READY_FOR_CUTOVER):",
              f"  ./scripts/cutover reject {execution} --reason \"...\"",
              "Or, per server, with its task token (attribute token of the approval table, stack output"
              f" ApprovalTableName, items of execution {execution}):",
              "  aws stepfunctions send-task-success --task-token TOKEN --task-output '{\"approvedBy\": \"NAME\"}'",
              f"  aws stepfunctions send-task-failure --task-token TOKEN --error {REJECTION_ERROR}"
              " --cause 'rejected by NAME: REASON'"]
    return "\n".join(lines)


# -- for the operator --------------------------------------------------------------------------------------------


def pending(execution_name: str, session: Any = None, table: str | None = None) -> list[dict]:
    """The servers of the execution waiting for an answer: server, account, instance id, private IP, since."""
    items = _items(_client("dynamodb", session), table or config.approval_table(), execution_name)
    return [{"sourceServerId": _text(item, "sourceServerId"), "targetAccountId": _text(item, "targetAccountId"),
             "restoredInstanceId": _text(item, "restoredInstanceId"),
             "privateIpAddress": _text(item, "privateIpAddress") or None,
             "waitingSince": _iso(int(item["waitingSince"]["N"])), "deadline": _iso(int(item["deadline"]["N"]))}
            for key, item in sorted(items.items()) if key != GATE and _waiting(item)]


def notified(execution_name: str, session: Any = None, table: str | None = None) -> bool:
    """Whether the wave's approval notification went out (every server of it waits or has ended)."""
    item = _client("dynamodb", session).get_item(TableName=table or config.approval_table(),
                                                 Key=_key(execution_name, GATE), ConsistentRead=True).get("Item")
    return bool(item and "publishedAt" in item)


def approve(execution_name: str, approver: str, session: Any = None, table: str | None = None) -> list[str]:
    """Let every waiting server of the execution go on to finalize; returns the servers answered now.

    A token already answered (by an earlier call, or whose deadline passed) is skipped, not an error.
    """
    approver = _checked("approver", approver, _MAX_APPROVER)
    output = json.dumps({"approvedBy": approver, "approvedAt": _iso(int(clock.now()))})
    return _answer(execution_name, APPROVED, approver, session, table,
                   lambda sfn, token: sfn.send_task_success(taskToken=token, output=output))


def reject(execution_name: str, approver: str, reason: str, session: Any = None,
           table: str | None = None) -> list[str]:
    """Send every waiting server of the execution to rollback; returns the servers answered now."""
    approver = _checked("approver", approver, _MAX_APPROVER)
    reason = _checked("reason", reason, _MAX_REASON)
    cause = f"rejected by {approver}: {reason}"
    return _answer(execution_name, REJECTED, approver, session, table,
                   lambda sfn, token: sfn.send_task_failure(taskToken=token, error=REJECTION_ERROR, cause=cause))


def _answer(execution_name: str, status: str, approver: str, session: Any, table: str | None, send) -> list[str]:
    execution_name = _checked("execution", execution_name, 80)
    table = table or config.approval_table()
    dynamodb, sfn = _client("dynamodb", session), _client("stepfunctions", session)
    answered = []
    for key, item in sorted(_items(dynamodb, table, execution_name).items()):
        if key == GATE or not _waiting(item):
            continue
        try:
            send(sfn, item["token"]["S"])
        except ClientError as err:
            if err.response["Error"]["Code"] not in _ALREADY_ANSWERED:
                raise
            # Answered some other way (the console, the plain CLI) or timed out: no longer waiting.
            _record_answer(dynamodb, table, execution_name, item, CLOSED, "")
            continue
        _record_answer(dynamodb, table, execution_name, item, status, approver)
        answered.append(key)
    return answered


def _record_answer(dynamodb, table: str, execution: str, item: dict, status: str, approver: str) -> None:
    # Only the token that was answered: a retried task may have recorded a newer one meanwhile.
    try:
        dynamodb.update_item(TableName=table, Key=_key(execution, item["sourceServerId"]["S"]),
                             UpdateExpression="SET #status = :status, answeredBy = :by, answeredAt = :now",
                             ConditionExpression="#token = :token",
                             ExpressionAttributeNames={"#status": "status", "#token": "token"},
                             ExpressionAttributeValues={":status": {"S": status}, ":by": {"S": approver},
                                                        ":now": {"N": str(int(clock.now()))},
                                                        ":token": item["token"]})
    except ClientError as err:
        if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


# -- the table -----------------------------------------------------------------------------------------------------


def _client(service: str, session: Any):
    return aws.client(service) if session is None else session.client(service)


def _key(execution: str, sort_key: str) -> dict:
    return {"execution": {"S": execution}, "sourceServerId": {"S": sort_key}}


def _items(dynamodb, table: str, execution: str) -> dict[str, dict]:
    found, start = {}, None
    while True:
        page = dynamodb.query(TableName=table, ConsistentRead=True, KeyConditionExpression="execution = :execution",
                              ExpressionAttributeValues={":execution": {"S": execution}},
                              **({"ExclusiveStartKey": start} if start else {}))
        found.update({item["sourceServerId"]["S"]: item for item in page["Items"]})
        start = page.get("LastEvaluatedKey")
        if not start:
            return found


def _waiting(item: dict) -> bool:
    # Waiting: recorded by Await Approval, not answered, its branch still on. A task whose deadline passed
    # is not told apart by the clock here: its branch is released once rolled back, and until then an
    # answer to it is refused as already closed (TaskTimedOut), which closes it here too.
    return _text(item, "status") == WAITING and not item.get("released", {}).get("BOOL")


def _answered(item: dict) -> bool:
    return _text(item, "status") in (APPROVED, REJECTED)


def _text(item: dict, name: str) -> str:
    return item.get(name, {}).get("S", "")


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _checked(field: str, value: Any, longest: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestInvalid(field, "must be a non-empty string")
    if len(value) > longest:
        raise RequestInvalid(field, f"must be at most {longest} characters")
    if not value.isprintable():
        raise RequestInvalid(field, "must not hold control or format characters")
    return value.strip()
