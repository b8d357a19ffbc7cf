"""A failure after finalize destroys nothing and says what is left; a new run resumes after finalize."""

from __future__ import annotations

from sandbox.runner import Sandbox
from tests.faults.helpers import TARGET_ACCOUNT, one_server_request, servers_of
from tests.rehearsal.helpers import lifecycle_of, live_instances

SKIPPED = ["Create Image", "Copy Image For Sharing", "Share With Target", "Copy Image To Target",
           "Launch Restored Instance", "Finalize Cutover"]


def test_a_failed_agent_install_is_left_to_do_and_a_new_run_resumes_after_finalize():
    # GIVEN a one-server wave whose agent install is refused by SSM the first time
    request = one_server_request()
    server_id = request["servers"][0]["sourceServerId"]
    with Sandbox(request, faults=["Install Agent/ssm:SendCommand:denied:1"]) as sandbox:
        # WHEN it is rehearsed
        first = sandbox.rehearse().as_json()

        # THEN the server is cut over, the restored instance stays, and the report says what is left
        (server,) = servers_of(first)
        assert server["outcome"] == "CUT_OVER_WITH_FOLLOW_UP"
        assert (server["failedStep"], server["error"]["code"]) == ("Install Agent", "AccessDeniedException")
        assert server["leftToDo"] == ["Install Agent", "Configure Agent"]
        (restored,) = live_instances(first["inventory"], TARGET_ACCOUNT)
        assert lifecycle_of(first["inventory"]) == {server_id: "CUTOVER"}
        assert first["inventory"]["accounts"][TARGET_ACCOUNT]["ssmCommands"] == []

        # WHEN a new execution is started for the same server
        second = sandbox.rehearse().as_json()

    # THEN it skipped everything up to finalize, installed and configured the agent on the same
    # instance, and ended SUCCEEDED with nothing duplicated
    assert second["status"] == "SUCCEEDED", second["cause"]
    (server,) = servers_of(second)
    assert server["outcome"] == "CUT_OVER"
    assert server["skippedSteps"] == SKIPPED
    assert server["restoredInstanceId"] == restored["id"]
    assert [i["id"] for i in live_instances(second["inventory"], TARGET_ACCOUNT)] == [restored["id"]]
    commands = second["inventory"]["accounts"][TARGET_ACCOUNT]["ssmCommands"]
    assert sorted(c["document"] for c in commands) == ["AWS-ConfigureAWSPackage", "AmazonCloudWatch-ManageAgent"]
    assert all(c["instanceIds"] == [restored["id"]] for c in commands)
    assert second["faults"]["injected"] == {"Install Agent/ssm:SendCommand:denied:1": 1}


def test_the_left_over_agent_install_can_be_run_again_alone():
    # GIVEN a cutover whose agent install failed after finalize
    request = one_server_request()
    with Sandbox(request, faults=["Install Agent/ssm:SendCommand:denied:1"]) as sandbox:
        first = sandbox.rehearse().as_json()
        (server,) = servers_of(first)

        # WHEN that one step is run again by itself (as `python -m sandbox invoke SendAgentCommandFunction
        # --event FILE` or `sam local invoke` would), with the state the report describes
        state = {"execution": first["execution"], "wave": request["wave"], "server": request["servers"][0],
                 "options": request["options"], "restored": {"instanceId": server["restoredInstanceId"], "ready": True}}
        sent = sandbox.invoke("SendAgentCommandFunction", {"command": "install", "state": state})
        again = sandbox.invoke("SendAgentCommandFunction", {"command": "install", "state": state})
        inventory = sandbox.world.inventory()

    # THEN SSM has the install command for the restored instance, once, however often the step is run
    (command,) = inventory["accounts"][TARGET_ACCOUNT]["ssmCommands"]
    assert (command["commandId"], command["document"], command["instanceIds"]) == (
        sent["commandId"], "AWS-ConfigureAWSPackage", [server["restoredInstanceId"]])
    assert again["commandId"] == sent["commandId"]
