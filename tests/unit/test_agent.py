"""The CloudWatch agent on the restored instance, through SSM in the target account."""

from __future__ import annotations

import pytest
from moto.ssm.models import ssm_backends

from pipeline import agent, ledger
from sandbox import aws_rules
from pipeline.errors import AgentCommandFailed, RequestInvalid, WaitTimedOut
from tests.unit.support import REGION, SOURCE_SERVER_ID, TARGET_ACCOUNT, account_client, poll, server_state

CONFIG_PARAMETER = "AmazonCloudWatch-linux"


@pytest.fixture
def target_ssm(target_account):
    return account_client("ssm", target_account)


@pytest.fixture
def finalized(target_network, claimed_server) -> dict:
    """The state after finalize: a restored instance runs in the target account with the SSM instance profile.

    Launched straight in the target account: the agent steps read only the restored instance.
    """
    ec2 = account_client("ec2", target_network.account_id)
    instance_id = ec2.run_instances(
        ImageId="ami-0123456789abcdef0",
        InstanceType="t3.medium",
        MinCount=1,
        MaxCount=1,
        SubnetId=target_network.subnet_id,
        IamInstanceProfile={"Name": target_network.instance_profile},
    )["Instances"][0]["InstanceId"]
    return server_state(
        target_network.placement(instanceProfile=target_network.instance_profile),
        options={"maxPollAttempts": 5},
        claim={"claimed": True, "artifacts": {}},
        restored={"instanceId": instance_id, "ready": True, "attempts": 0},
        finalize={"finalized": True},
    )


@pytest.fixture
def managed(finalized) -> dict:
    """The state once the restored instance is an online managed instance."""
    poll(agent.check_managed, finalized, "managed")
    return finalized


def commands_on(ssm, instance_id: str) -> list[dict]:
    return ssm.list_commands(InstanceId=instance_id)["Commands"]


def invocation_of(command_id: str) -> dict:
    """The invocation moto keeps for a command, to set the status the agent would report."""
    [command] = [c for c in ssm_backends[TARGET_ACCOUNT][REGION]._commands if c.command_id == command_id]
    return command.invocations[0]


def test_check_managed_waits_until_the_agent_checks_in(finalized, world):
    # GIVEN a restored instance whose SSM agent checks in 90 s after it runs, and has not yet
    aws_rules.pacing.ssm_registration_seconds = 90
    # WHEN it is checked now, and again 90 s later
    first = agent.check_managed(finalized)
    finalized["managed"] = first
    world.clock.sleep(90)
    second = agent.check_managed(finalized)

    # THEN the first check waits, the second sees it online
    instance_id = finalized["restored"]["instanceId"]
    assert (first["instanceId"], first["ready"], first["attempts"]) == (instance_id, False, 1)
    assert (second["instanceId"], second["ready"], second["attempts"]) == (instance_id, True, 0)


def test_check_managed_gives_up_for_an_instance_without_the_ssm_role(finalized, target_network):
    # GIVEN a restored instance launched without an instance profile: its agent can never register
    ec2 = account_client("ec2", target_network.account_id)
    finalized["restored"]["instanceId"] = ec2.run_instances(
        ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, SubnetId=target_network.subnet_id
    )["Instances"][0]["InstanceId"]
    finalized["options"]["maxPollAttempts"] = 3

    # WHEN it is checked up to the bound
    for _ in range(2):
        finalized["managed"] = agent.check_managed(finalized)

    # THEN the wait ends
    with pytest.raises(WaitTimedOut, match="managed instance gave up: not ready after 3 checks"):
        agent.check_managed(finalized)


def test_install_sends_the_package_document(managed, target_ssm):
    # GIVEN an online managed instance
    instance_id = managed["restored"]["instanceId"]

    # WHEN the install command is sent
    result = agent.send(managed, "install")

    # THEN one command for that instance installs the CloudWatch agent package
    [command] = commands_on(target_ssm, instance_id)
    assert command["DocumentName"] == "AWS-ConfigureAWSPackage"
    assert command["Parameters"] == {"action": ["Install"], "name": ["AmazonCloudWatchAgent"]}
    assert command["InstanceIds"] == [instance_id]
    assert result == {
        "commandId": command["CommandId"],
        "document": "AWS-ConfigureAWSPackage",
        "instanceId": instance_id,
        "ready": False,
        "attempts": 0,
    }
    assert ledger.read(SOURCE_SERVER_ID)["artifacts"]["agentInstallCommand"] == command["CommandId"]


def test_configure_points_the_agent_at_the_parameter(managed, target_ssm):
    # GIVEN a request naming the agent configuration parameter
    managed["options"]["agentConfigParameter"] = CONFIG_PARAMETER

    # WHEN the configure command is sent
    agent.send(managed, "configure")

    # THEN the agent is told to load its configuration from that parameter and restart
    [command] = commands_on(target_ssm, managed["restored"]["instanceId"])
    assert command["DocumentName"] == "AmazonCloudWatch-ManageAgent"
    assert command["Parameters"] == {
        "action": ["configure"],
        "mode": ["ec2"],
        "optionalConfigurationSource": ["ssm"],
        "optionalConfigurationLocation": [CONFIG_PARAMETER],
        "optionalRestart": ["yes"],
    }


def test_configure_uses_the_stack_default_parameter(managed, target_ssm, monkeypatch):
    # GIVEN only the stack names a parameter / WHEN configure is sent / THEN the agent reads that one
    monkeypatch.setenv("DEFAULT_AGENT_CONFIG_PARAMETER", "AmazonCloudWatch-default")
    agent.send(managed, "configure")
    [command] = commands_on(target_ssm, managed["restored"]["instanceId"])
    assert command["Parameters"]["optionalConfigurationLocation"] == ["AmazonCloudWatch-default"]


def test_configure_without_any_parameter_is_refused_before_sending(managed, target_ssm):
    # GIVEN neither the request nor the stack names a configuration parameter
    # WHEN / THEN the step names the missing option, and nothing is sent
    with pytest.raises(RequestInvalid) as refused:
        agent.send(managed, "configure")
    assert refused.value.field == "options.agentConfigParameter"
    assert commands_on(target_ssm, managed["restored"]["instanceId"]) == []


def test_unknown_command_is_refused(managed):
    # GIVEN an action the step does not know / WHEN it is sent / THEN the command field is named
    with pytest.raises(RequestInvalid) as refused:
        agent.send(managed, "uninstall")
    assert refused.value.field == "command"


@pytest.mark.parametrize("action", ["install", "configure"])
def test_send_twice_leaves_one_command(managed, target_ssm, action):
    # GIVEN the command was sent once
    managed["options"]["agentConfigParameter"] = CONFIG_PARAMETER
    first = agent.send(managed, action)

    # WHEN the step runs again
    second = agent.send(managed, action)

    # THEN it found the first command
    assert second["commandId"] == first["commandId"]
    assert len(commands_on(target_ssm, managed["restored"]["instanceId"])) == 1


def test_install_and_configure_are_distinct_commands(managed, target_ssm):
    # GIVEN both agent actions / WHEN each is sent / THEN they are two commands
    managed["options"]["agentConfigParameter"] = CONFIG_PARAMETER
    install = agent.send(managed, "install")
    configure = agent.send(managed, "configure")
    assert install["commandId"] != configure["commandId"]
    assert len(commands_on(target_ssm, managed["restored"]["instanceId"])) == 2


@pytest.fixture
def installing(managed) -> dict:
    managed["agentInstall"] = agent.send(managed, "install")
    return managed


def test_check_of_a_successful_command_is_ready(installing):
    # GIVEN the install ran / WHEN it is checked / THEN it is ready
    result = agent.check(installing, "install")
    assert (result["ready"], result["status"], result["attempts"]) == (True, "Success", 0)


def test_check_before_the_invocation_exists_is_pending(installing):
    # GIVEN SSM has not created the invocation yet (right after SendCommand)
    [command] = [c for c in ssm_backends[TARGET_ACCOUNT][REGION]._commands]
    command.invocations.clear()

    # WHEN / THEN the check waits rather than fails
    result = agent.check(installing, "install")
    assert (result["ready"], result["status"], result["attempts"]) == (False, "InvocationDoesNotExist", 1)


@pytest.mark.parametrize("status", ["Pending", "InProgress", "Delayed"])
def test_check_of_a_running_command_is_pending(installing, status):
    # GIVEN the agent reports the command still running / WHEN checked / THEN it waits
    invocation_of(installing["agentInstall"]["commandId"])["Status"] = status
    result = agent.check(installing, "install")
    assert (result["ready"], result["status"]) == (False, status)


@pytest.mark.parametrize("status", ["Failed", "TimedOut", "Cancelled"])
def test_check_of_a_failed_command_raises(installing, status):
    # GIVEN the agent reports the package install failed
    invocation = invocation_of(installing["agentInstall"]["commandId"])
    invocation.update(Status=status, StandardErrorContent="Failed to download AmazonCloudWatchAgent manifest")

    # WHEN / THEN the check raises AgentCommandFailed, with the document, the status and the agent's words
    with pytest.raises(AgentCommandFailed) as failed:
        agent.check(installing, "install")
    message = str(failed.value)
    assert "AWS-ConfigureAWSPackage" in message and status in message
    assert "Failed to download AmazonCloudWatchAgent manifest" in message


def test_check_of_a_pending_command_is_bounded(installing):
    # GIVEN a command that never ends / WHEN checked to the bound / THEN the wait ends
    invocation_of(installing["agentInstall"]["commandId"])["Status"] = "InProgress"
    installing["options"]["maxPollAttempts"] = 2
    installing["agentInstall"] = agent.check(installing, "install")
    with pytest.raises(WaitTimedOut):
        agent.check(installing, "install")
