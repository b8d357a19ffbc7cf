"""The approval gate's table and its answers: who waits, one notification per wave, approve and reject."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import ANY, Stubber

from pipeline import approval, wave
from pipeline.errors import RequestInvalid
from tests.unit.support import (
    EXECUTION,
    OTHER_SOURCE_SERVER_ID,
    SECOND_TARGET_ACCOUNT,
    SOURCE_SERVER_ID,
    TARGET_ACCOUNT,
    migration_client,
    server_state,
)

APPROVAL_TABLE = "mgn-cutover-approval"


@pytest.fixture
def approval_table(moto_world, monkeypatch) -> str:
    """The approval table as the template declares it: execution (S) + sourceServerId (S)."""
    migration_client("dynamodb").create_table(
        TableName=APPROVAL_TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "execution", "AttributeType": "S"},
                              {"AttributeName": "sourceServerId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "execution", "KeyType": "HASH"},
                   {"AttributeName": "sourceServerId", "KeyType": "RANGE"}])
    monkeypatch.setenv("APPROVAL_TABLE", APPROVAL_TABLE)
    return APPROVAL_TABLE


@pytest.fixture
def inbox(notification_topic):
    """An SQS queue subscribed to the notification topic: what an operator's mailbox would get."""
    sqs = migration_client("sqs")
    queue_url = sqs.create_queue(QueueName="approval-notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    migration_client("sns").subscribe(TopicArn=notification_topic, Protocol="sqs", Endpoint=queue_arn)

    def receive() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]

    return receive


def gated(server_id: str = SOURCE_SERVER_ID, account: str = TARGET_ACCOUNT, instance: str = "i-0aaa",
          ip: str = "10.20.1.10", wave_size: int = 2, timeout: int = 3600) -> dict:
    """A server's state at Wait For Approval: its restored instance verified, the gate required."""
    current = server_state(placement={"accountId": account, "subnetId": "subnet-0a1b2c3d4e5f60001",
                                      "securityGroupIds": ["sg-0a1b2c3d4e5f60001"]},
                           options={"approval": {"required": True, "timeoutSeconds": timeout}},
                           restored={"instanceId": instance, "privateIpAddress": ip, "ready": True})
    current["server"]["sourceServerId"] = server_id
    current["waveSize"] = wave_size
    return current


def operator_session(stubbed_sfn) -> SimpleNamespace:
    """The operator's session: DynamoDB of the moto world, Step Functions stubbed with what AWS answers."""
    return SimpleNamespace(client=lambda service: stubbed_sfn if service == "stepfunctions"
                           else migration_client(service))


def test_options_default_to_no_gate_and_four_hours():
    # GIVEN a request without approval options, and one with the gate
    plain = server_state()["options"]["approval"]
    gate = server_state(options={"approval": {"required": True}})["options"]["approval"]

    # THEN the gate is off by default; when on, its deadline is four hours
    assert plain == {"required": False, "timeoutSeconds": 14400}
    assert gate == {"required": True, "timeoutSeconds": 14400}


@pytest.mark.parametrize("approval_option, field", [
    ({"required": "yes"}, "options.approval.required"),
    ({"timeoutSeconds": 0}, "options.approval.timeoutSeconds"),
    ({"timeoutSeconds": 86401}, "options.approval.timeoutSeconds"),
    ({"timeoutSeconds": "60"}, "options.approval.timeoutSeconds"),
    ({"required": True, "approvers": ["alice"]}, "options.approval.approvers"),
])
def test_bad_approval_options_are_refused_naming_the_field(approval_option, field):
    # WHEN a request carries a bad approval option THEN validation names that field
    with pytest.raises(RequestInvalid) as refused:
        server_state(options={"approval": approval_option})
    assert refused.value.field == field


def test_the_wave_is_notified_once_when_its_last_server_arrives(approval_table, inbox):
    # GIVEN a wave of two servers, the first one waiting at the gate
    first = approval.arrive(gated(), "token-1")
    assert first == {"waiting": True, "notified": False}
    assert inbox() == []

    # WHEN the second arrives, and its step is run a second time
    second = approval.arrive(gated(OTHER_SOURCE_SERVER_ID, SECOND_TARGET_ACCOUNT, "i-0bbb", "10.30.2.20"), "token-2")
    again = approval.arrive(gated(OTHER_SOURCE_SERVER_ID, SECOND_TARGET_ACCOUNT, "i-0bbb", "10.30.2.20"), "token-3")

    # THEN one notification went out, naming both servers, their accounts, instances and addresses
    assert second["notified"] is True and again["notified"] is False
    (message,) = inbox()
    assert message["Subject"] == "Approval needed: wave-1 — 2 servers ready to finalize"
    for text in (SOURCE_SERVER_ID, TARGET_ACCOUNT, "i-0aaa", "10.20.1.10", OTHER_SOURCE_SERVER_ID,
                 SECOND_TARGET_ACCOUNT, "i-0bbb", "10.30.2.20", f"./scripts/cutover approve {EXECUTION}",
                 f"./scripts/cutover reject {EXECUTION} --reason", "aws stepfunctions send-task-success"):
        assert text in message["Message"]
    # ... and what is pending is what an operator would approve, the latest token of each server
    assert [(p["sourceServerId"], p["restoredInstanceId"], p["privateIpAddress"])
            for p in approval.pending(EXECUTION)] == [(SOURCE_SERVER_ID, "i-0aaa", "10.20.1.10"),
                                                     (OTHER_SOURCE_SERVER_ID, "i-0bbb", "10.30.2.20")]


def test_a_server_that_ended_before_the_gate_does_not_hold_the_notification_back(approval_table, inbox):
    # GIVEN a wave of two servers: one waits at the gate
    approval.arrive(gated(), "token-1")

    # WHEN the other's branch ends without reaching the gate (it was rolled back)
    notified = approval.withdraw(gated(OTHER_SOURCE_SERVER_ID), "ROLLED_BACK")

    # THEN the notification goes out for the one waiting, and says which did not make it
    assert notified is True
    (message,) = inbox()
    assert message["Subject"] == "Approval needed: wave-1 — 1 server ready to finalize"
    assert "i-0aaa" in message["Message"]
    assert f"{OTHER_SOURCE_SERVER_ID}  ROLLED_BACK" in message["Message"]
    assert [p["sourceServerId"] for p in approval.pending(EXECUTION)] == [SOURCE_SERVER_ID]


def test_release_server_of_a_server_that_failed_sends_the_notification_it_completes(approval_table, claimed_server,
                                                                                      inbox):
    # GIVEN a wave of two servers: one waits at the gate, the other failed and was rolled back
    approval.arrive(gated(OTHER_SOURCE_SERVER_ID, SECOND_TARGET_ACCOUNT, "i-0bbb", "10.30.2.20"), "token-2")
    failed = gated()
    failed.pop("restored")
    failed.update(claim={"claimed": True, "artifacts": {}}, error={"Error": "CutoverLaunchFailed", "Cause": "failed"},
                  rollback={"removed": [], "failures": [], "complete": True})

    # WHEN its Release Server step runs
    report = wave.release(failed)

    # THEN its line says rolled back, and the waiting server's approval request went out
    assert report["outcome"] == "ROLLED_BACK"
    (message,) = inbox()
    assert message["Subject"] == "Approval needed: wave-1 — 1 server ready to finalize"
    assert "i-0bbb" in message["Message"] and f"{SOURCE_SERVER_ID}  ROLLED_BACK" in message["Message"]


def test_a_wave_whose_every_server_failed_sends_no_approval_request(approval_table, inbox):
    # WHEN both servers of the wave end before the gate
    approval.withdraw(gated(), "ROLLED_BACK")
    approval.withdraw(gated(OTHER_SOURCE_SERVER_ID), "REFUSED")

    # THEN there is nothing to approve, and nobody is asked to
    assert inbox() == [] and approval.pending(EXECUTION) == []
    assert approval.notified(EXECUTION) is False


def test_approve_answers_each_waiting_token_once_and_skips_one_already_answered(approval_table, inbox):
    # GIVEN both servers of the wave waiting
    approval.arrive(gated(), "token-1")
    approval.arrive(gated(OTHER_SOURCE_SERVER_ID, SECOND_TARGET_ACCOUNT, "i-0bbb", "10.30.2.20"), "token-2")
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    with Stubber(sfn) as stub:
        # AWS answers an already-closed task (answered from the console, say) with TaskTimedOut
        stub.add_client_error("send_task_success", "TaskTimedOut", expected_params={
            "taskToken": "token-1", "output": ANY})
        stub.add_response("send_task_success", {}, {"taskToken": "token-2", "output": ANY})

        # WHEN the wave is approved, and approved again
        answered = approval.approve(EXECUTION, "alice", operator_session(sfn))
        again = approval.approve(EXECUTION, "alice", operator_session(sfn))
        stub.assert_no_pending_responses()

    # THEN the one token still open was answered, nothing was sent twice, nothing waits any more
    assert answered == [OTHER_SOURCE_SERVER_ID] and again == []
    assert approval.pending(EXECUTION) == []


def test_reject_sends_the_rejection_with_who_and_why(approval_table, inbox):
    # GIVEN a server waiting at the gate
    approval.arrive(gated(wave_size=1), "token-1")
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    with Stubber(sfn) as stub:
        stub.add_response("send_task_failure", {}, {"taskToken": "token-1", "error": "ApprovalRejected",
                                                    "cause": "rejected by bob: smoke test failed on web-01"})

        # WHEN it is rejected
        answered = approval.reject(EXECUTION, "bob", "smoke test failed on web-01", operator_session(sfn))

    # THEN the branch gets ApprovalRejected, with the approver and reason as its cause
    assert answered == [SOURCE_SERVER_ID]
    assert approval.pending(EXECUTION) == []


@pytest.mark.parametrize("approver, reason, field", [
    ("", "not ready", "approver"),
    ("bob", "   ", "reason"),
    ("bob", "x" * 1025, "reason"),
    ("bob\u202e", "not ready", "approver"),
])
def test_bad_answers_are_refused_naming_the_field_and_answer_nothing(approval_table, inbox, approver, reason,
                                                                    field):
    # GIVEN a server waiting at the gate
    approval.arrive(gated(wave_size=1), "token-1")

    # WHEN a rejection without a usable approver or reason is given THEN it is refused before anything is sent
    with pytest.raises(RequestInvalid) as refused:
        approval.reject(EXECUTION, approver, reason, operator_session(object()))
    assert refused.value.field == field
    assert [p["sourceServerId"] for p in approval.pending(EXECUTION)] == [SOURCE_SERVER_ID]


def test_a_server_released_after_it_waited_is_not_pending(approval_table, inbox):
    # GIVEN one server waiting, and another that waited and whose branch then ended (its deadline passed)
    approval.arrive(gated(wave_size=3), "token-1")
    approval.arrive(gated(OTHER_SOURCE_SERVER_ID, wave_size=3), "token-2")
    approval.withdraw(gated(OTHER_SOURCE_SERVER_ID, wave_size=3), "ROLLED_BACK")

    # THEN only the first is offered for approval, with when it began to wait and its deadline
    (waiting,) = approval.pending(EXECUTION)
    assert waiting["sourceServerId"] == SOURCE_SERVER_ID
    assert waiting["waitingSince"] < waiting["deadline"]
