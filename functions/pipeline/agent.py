"""The CloudWatch agent on the restored instance, through SSM in the target account."""

from __future__ import annotations

from botocore.exceptions import ClientError

from pipeline import aws, ledger, names, state
from pipeline.errors import AgentCommandFailed, RequestInvalid
from pipeline.observability import logger

INSTALL = "install"
CONFIGURE = "configure"
SLOTS = {INSTALL: "agentInstall", CONFIGURE: "agentConfigure"}

PENDING_STATUSES = ("Pending", "InProgress", "Delayed")


def check_managed(current: dict) -> dict:
    """One check of SSM registration: ready once the restored instance's agent is Online."""
    account = state.target_account(current)
    instance_id = state.slot(current, "restored")["instanceId"]
    ssm = aws.target_client("ssm", account)
    info = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])
    online = any(item.get("PingStatus") == "Online" for item in info.get("InstanceInformationList", []))
    if online:
        logger.info("Restored instance is a managed instance", restored_instance_id=instance_id)
    return state.poll_result(current, "managed", online, instanceId=instance_id)


def command_for(action: str, current: dict) -> tuple[str, dict]:
    if action == INSTALL:
        return "AWS-ConfigureAWSPackage", {"action": ["Install"], "name": ["AmazonCloudWatchAgent"]}
    if action == CONFIGURE:
        parameter = state.agent_config_parameter(current)
        if not parameter:
            raise RequestInvalid("options.agentConfigParameter", "no agent configuration parameter is set")
        return "AmazonCloudWatch-ManageAgent", {
            "action": ["configure"],
            "mode": ["ec2"],
            "optionalConfigurationSource": ["ssm"],
            "optionalConfigurationLocation": [parameter],
            "optionalRestart": ["yes"],
        }
    raise RequestInvalid("command", f"must be {INSTALL} or {CONFIGURE}, not {action!r}")


def send(current: dict, action: str) -> dict:
    """Send the agent command, or find the one an earlier attempt sent (by its comment)."""
    account = state.target_account(current)
    server_id = state.source_server_id(current)
    instance_id = state.slot(current, "restored")["instanceId"]
    document, parameters = command_for(action, current)
    ssm = aws.target_client("ssm", account)
    comment = names.command_comment(server_id, action)

    command_id = _find(ssm, instance_id, document, comment)
    if command_id:
        logger.info("Agent command already sent", command_id=command_id, action=action)
    else:
        command_id = ssm.send_command(
            InstanceIds=[instance_id], DocumentName=document, Parameters=parameters, Comment=comment
        )["Command"]["CommandId"]
        logger.info("Agent command sent", command_id=command_id, action=action, document=document)
    ledger.record(server_id, state.execution(current), f"{SLOTS[action]}Command", command_id)
    return {"commandId": command_id, "document": document, "instanceId": instance_id, "ready": False, "attempts": 0}


def _find(ssm, instance_id: str, document: str, comment: str) -> str | None:
    commands = ssm.list_commands(InstanceId=instance_id).get("Commands", [])
    for command in commands:
        if command.get("DocumentName") == document and command.get("Comment") == comment:
            return command["CommandId"]
    return None


def check(current: dict, action: str) -> dict:
    """One check of an agent command on the restored instance."""
    slot_name = SLOTS[action]
    command = state.slot(current, slot_name)
    ssm = aws.target_client("ssm", state.target_account(current))
    try:
        invocation = ssm.get_command_invocation(CommandId=command["commandId"], InstanceId=command["instanceId"])
    except ClientError as err:
        # Right after SendCommand the invocation may not exist yet: that is still pending.
        if err.response["Error"]["Code"] != "InvocationDoesNotExist":
            raise
        return state.poll_result(current, slot_name, False, status="InvocationDoesNotExist")

    status = invocation["Status"]
    if status in PENDING_STATUSES:
        return state.poll_result(current, slot_name, False, status=status)
    if status != "Success":
        detail = invocation.get("StandardErrorContent") or invocation.get("StatusDetails") or status
        raise AgentCommandFailed(f"{command['document']} ended {status} on {command['instanceId']}: {detail[:500]}")
    logger.info("Agent command succeeded", command_id=command["commandId"], action=action)
    return state.poll_result(current, slot_name, True, status=status)
