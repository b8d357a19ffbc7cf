"""The end of a server's branch and of the wave: outcome, report line, summary and notification."""

from __future__ import annotations

import json

import pytest

from pipeline import ledger, wave
from pipeline.request import Options
from tests.unit.support import (
    EXECUTION,
    OTHER_EXECUTION,
    SOURCE_SERVER_ID,
    TARGET_ACCOUNT,
    WAVE,
    migration_client,
    server_state,
)

CLAIMED = {"claimed": True, "artifacts": {}}
RESTORED = {"instanceId": "i-0restored0000001", "privateIpAddress": "10.20.1.10", "ready": True, "attempts": 0}
FINALIZED = {"finalized": True}
# Every slot a branch fills on its way to the point of no return.
THROUGH_FINALIZE = {
    "claim": CLAIMED,
    "cutover": {"jobId": "mgnjob-1", "ready": True, "attempts": 0, "cutoverInstanceId": "i-0cutover00000001"},
    "image": {"imageId": "ami-00000000000000001", "ready": True, "attempts": 0},
    "sharedImage": {"imageId": "ami-00000000000000002", "copied": True, "ready": True, "attempts": 0},
    "share": {"accountId": TARGET_ACCOUNT, "imageId": "ami-00000000000000002", "snapshotIds": [], "grantId": "g-1"},
    "targetImage": {"imageId": "ami-00000000000000003", "ready": True, "attempts": 0},
    "restored": RESTORED,
    "finalize": FINALIZED,
}

NOT_FOUND_CAUSE = json.dumps(
    {
        "errorMessage": "An error occurred (InvalidAMIID.NotFound) when calling the CopyImage operation: "
        "The image id '[ami-0123456789abcdef0]' does not exist",
        "errorType": "ClientError",
        "stackTrace": ["  File \"/var/task/handlers/copy_image_to_target.py\", line 9, in handler\n"],
    }
)


def caught(error: str, cause: str) -> dict:
    return {"Error": error, "Cause": cause}


def test_finalized_server_without_error_is_cut_over():
    # GIVEN a server whose branch went through finalize and clean up
    current = server_state(**THROUGH_FINALIZE, cleanup={"failures": [], "ready": True})

    # WHEN its report is made
    report = wave.server_report(current)

    # THEN it is cut over, with the restored instance and its address
    assert report == {
        "sourceServerId": SOURCE_SERVER_ID,
        "targetAccountId": TARGET_ACCOUNT,
        "outcome": "CUT_OVER",
        "restoredInstanceId": "i-0restored0000001",
        "privateIpAddress": "10.20.1.10",
    }


def test_finalized_server_with_a_later_error_needs_follow_up():
    # GIVEN the agent install failed after finalize
    current = server_state(
        **THROUGH_FINALIZE,
        managed={"ready": True, "attempts": 0},
        error=caught("AgentCommandFailed", json.dumps({"errorType": "AgentCommandFailed", "errorMessage": "Failed"})),
    )

    # WHEN / THEN the server is cut over but needs follow-up, at the install step
    report = wave.server_report(current)
    assert report["outcome"] == "CUT_OVER_WITH_FOLLOW_UP"
    assert report["failedStep"] == "Install Agent"
    assert report["restoredInstanceId"] == "i-0restored0000001"


def test_finalized_server_whose_cleanup_left_something_needs_follow_up():
    # GIVEN clean up reported a failure / WHEN reported / THEN follow-up
    current = server_state(
        claim=CLAIMED,
        restored=RESTORED,
        finalize=FINALIZED,
        cleanup={"failures": [{"artifact": "grant", "error": "AccessDeniedException"}], "ready": False},
    )
    assert wave.server_report(current)["outcome"] == "CUT_OVER_WITH_FOLLOW_UP"


def test_finalized_server_whose_cleanup_raised_needs_follow_up():
    # GIVEN Clean Up itself failed; its Catch writes $.cleanupError and leaves $.cleanup unset
    current = server_state(
        claim=CLAIMED,
        restored=RESTORED,
        finalize=FINALIZED,
        cleanupError=caught("States.TaskFailed", json.dumps({"errorType": "KeyError", "errorMessage": "'artifacts'"})),
    )

    # WHEN / THEN the intermediates may all still exist: the server needs follow-up
    assert wave.server_report(current)["outcome"] == "CUT_OVER_WITH_FOLLOW_UP"


def test_failure_before_finalize_with_complete_rollback_is_rolled_back():
    # GIVEN the copy into the target account failed and the rollback removed everything
    rollback = {"removed": ["image ami-1"], "failures": [], "complete": True}
    current = server_state(
        claim=CLAIMED,
        cutover={"jobId": "mgnjob-1", "ready": True, "cutoverInstanceId": "i-1"},
        image={"imageId": "ami-1", "ready": True},
        sharedImage={"imageId": "ami-1", "ready": True},
        share={"imageId": "ami-1"},
        restored={"instanceId": "i-0restored0000001", "ready": False},
        error=caught("ClientError", NOT_FOUND_CAUSE),
        rollback=rollback,
    )

    # WHEN its report is made
    report = wave.server_report(current)

    # THEN it is rolled back, with the step, the AWS error code and what rollback did; no restored instance is named
    assert report["outcome"] == "ROLLED_BACK"
    assert report["failedStep"] == "Copy Image To Target"
    assert report["error"]["code"] == "InvalidAMIID.NotFound"
    assert report["error"]["type"] == "ClientError"
    assert report["rollback"] == rollback
    assert report["restoredInstanceId"] is None and report["privateIpAddress"] is None


def test_incomplete_rollback_is_reported():
    # GIVEN a rollback that could not remove everything / WHEN reported / THEN incomplete
    current = server_state(
        claim=CLAIMED,
        error=caught("ImageFailed", "image failed"),
        rollback={"removed": [], "failures": [{"artifact": "image", "error": "x"}], "complete": False},
    )
    assert wave.server_report(current)["outcome"] == "ROLLBACK_INCOMPLETE"


def test_rollback_that_raised_is_incomplete():
    # GIVEN Roll Back itself failed (its Catch set rollbackError) / WHEN reported / THEN incomplete
    current = server_state(claim=CLAIMED, error=caught("ImageFailed", "x"), rollbackError=caught("States.Timeout", ""))
    assert wave.server_report(current)["outcome"] == "ROLLBACK_INCOMPLETE"


def test_server_never_claimed_is_refused():
    # GIVEN the claim failed: another execution holds the server
    current = server_state(
        error=caught("ServerClaimed", json.dumps({"errorType": "ServerClaimed", "errorMessage": "held by wave-0"}))
    )

    # WHEN / THEN it is refused at the claim, with the holder in the message
    report = wave.server_report(current)
    assert report["outcome"] == "REFUSED"
    assert report["failedStep"] == "Claim Server"
    assert report["error"] == {"type": "ServerClaimed", "code": "ServerClaimed", "message": "held by wave-0"}


def test_failed_step_given_by_the_state_machine_wins():
    # GIVEN the state names the failed step / WHEN reported / THEN that name is kept
    current = server_state(claim=CLAIMED, error=caught("X", "y"), failedStep="Share With Target")
    assert wave.server_report(current)["failedStep"] == "Share With Target"


# --- error_of ---------------------------------------------------------------------------------------------------------


def test_error_of_a_lambda_client_error_gives_the_aws_code():
    # GIVEN a Lambda ClientError's cause / WHEN read / THEN the AWS error code comes out
    error = wave.error_of(caught("ClientError", NOT_FOUND_CAUSE))
    assert error["type"] == "ClientError"
    assert error["code"] == "InvalidAMIID.NotFound"
    assert error["message"].startswith("An error occurred (InvalidAMIID.NotFound)")


def test_error_of_a_pipeline_error_uses_its_name_as_code():
    # GIVEN a pipeline error's cause / WHEN read / THEN its class is the code
    message = "image ami-1 is failed: Given key ID is not accessible"
    cause = json.dumps({"errorType": "ImageFailed", "errorMessage": message})
    assert wave.error_of(caught("ImageFailed", cause)) == {
        "type": "ImageFailed",
        "code": "ImageFailed",
        "message": message,
    }


def test_error_of_a_plain_text_cause_keeps_the_text():
    # GIVEN a Catch of a state timeout, whose Cause is not JSON
    error = wave.error_of(caught("States.Timeout", "Task timed out after 900.00 seconds"))

    # THEN the error name is the type and the code
    assert error == {
        "type": "States.Timeout",
        "code": "States.Timeout",
        "message": "Task timed out after 900.00 seconds",
    }


def test_error_of_finds_the_code_inside_a_transient_error():
    # GIVEN a TransientAwsError wrapping AWS's message / WHEN read / THEN AWS's code
    cause = json.dumps(
        {
            "errorType": "TransientAwsError",
            "errorMessage": "An error occurred (RequestLimitExceeded) when calling the CopyImage operation: slow down",
        }
    )
    assert wave.error_of(caught("TransientAwsError", cause))["code"] == "RequestLimitExceeded"


def test_error_of_an_empty_catch():
    # GIVEN a Catch with nothing in it / WHEN read / THEN the error is unknown, not a crash
    assert wave.error_of({}) == {"type": "Unknown", "code": "Unknown", "message": ""}


def test_error_message_is_bounded():
    # GIVEN a huge message / WHEN read / THEN it is cut to 1000 characters
    cause = json.dumps({"errorType": "ImageFailed", "errorMessage": "x" * 5000})
    assert len(wave.error_of(caught("ImageFailed", cause))["message"]) == 1000


# --- release ----------------------------------------------------------------------------------------------------------


def test_release_frees_the_claim_with_the_outcome(claimed_server, ledger_item):
    # GIVEN a server cut over by this execution
    current = server_state(**THROUGH_FINALIZE, cleanup={"failures": [], "ready": True})

    # WHEN it is released
    report = wave.release(current)

    # THEN the ledger records the outcome and frees the server
    assert report["outcome"] == "CUT_OVER"
    assert ledger_item()["claimStatus"] == {"S": "RELEASED"}
    assert ledger_item()["outcome"] == {"S": "CUT_OVER"}


def test_a_refused_server_leaves_the_other_executions_claim(ledger_table, ledger_item):
    # GIVEN another execution holds the server, and this one was refused
    ledger.claim(SOURCE_SERVER_ID, OTHER_EXECUTION, WAVE)
    current = server_state(error=caught("ServerClaimed", "held"))

    # WHEN this execution reports its refusal
    report = wave.release(current)

    # THEN the other execution still holds the server
    assert report["outcome"] == "REFUSED"
    assert ledger.holder(SOURCE_SERVER_ID) == OTHER_EXECUTION
    assert "outcome" not in ledger_item()


# --- summarize --------------------------------------------------------------------------------------------------------


@pytest.fixture
def subscriber(notification_topic):
    """An SQS queue subscribed to the notification topic, raw delivery off (the SNS envelope is read)."""
    sqs = migration_client("sqs")
    queue_url = sqs.create_queue(QueueName="wave-notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    migration_client("sns").subscribe(TopicArn=notification_topic, Protocol="sqs", Endpoint=queue_arn)

    def receive() -> list[dict]:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]

    return receive


def cut_over_line(server_id: str = SOURCE_SERVER_ID) -> dict:
    return {
        "sourceServerId": server_id,
        "targetAccountId": TARGET_ACCOUNT,
        "outcome": "CUT_OVER",
        "restoredInstanceId": "i-0restored0000001",
        "privateIpAddress": "10.20.1.10",
    }


def rolled_back_line() -> dict:
    return {
        "sourceServerId": "s-1a2b3c4d5e6f70002",
        "targetAccountId": "333333333333",
        "outcome": "ROLLED_BACK",
        "restoredInstanceId": None,
        "privateIpAddress": None,
        "failedStep": "Copy Image To Target",
        "error": wave.error_of(caught("ClientError", NOT_FOUND_CAUSE)),
    }


def test_summary_of_a_mixed_wave_is_published(subscriber):
    # GIVEN one server cut over and one rolled back
    results = [cut_over_line(), rolled_back_line()]

    # WHEN the wave is summarized
    summary = wave.summarize(WAVE, EXECUTION, results)

    # THEN the counts are right, and the topic's subscriber got the subject, one line per server and the attributes
    assert (summary["total"], summary["cutOver"], summary["failed"]) == (2, 1, 1)
    [notification] = subscriber()
    assert notification["Subject"] == "Cutover wave wave-1: 1 of 2 cut over"
    lines = notification["Message"].splitlines()
    assert lines[:3] == ["Cutover wave wave-1: 1 of 2 cut over", f"Execution: {EXECUTION}", ""]
    assert lines[3] == f"{SOURCE_SERVER_ID}  CUT_OVER  {TARGET_ACCOUNT}  i-0restored0000001  10.20.1.10"
    assert lines[4].startswith("s-1a2b3c4d5e6f70002  ROLLED_BACK  at Copy Image To Target  InvalidAMIID.NotFound: ")
    assert notification["MessageAttributes"] == {
        "wave": {"Type": "String", "Value": WAVE},
        "outcome": {"Type": "String", "Value": "FAILED"},
        "failed": {"Type": "Number", "Value": "1"},
    }


def test_summary_of_a_clean_wave_says_succeeded(subscriber):
    # GIVEN every server cut over, one with follow-up
    results = [cut_over_line(), {**cut_over_line("s-1a2b3c4d5e6f70002"), "outcome": "CUT_OVER_WITH_FOLLOW_UP"}]

    # WHEN it is summarized
    summary = wave.summarize(WAVE, EXECUTION, results)

    # THEN nothing failed, and the notification says so
    assert summary["failed"] == 0
    [notification] = subscriber()
    assert notification["MessageAttributes"]["outcome"]["Value"] == "SUCCEEDED"
    assert notification["Subject"] == "Cutover wave wave-1: 2 of 2 cut over"


def test_refused_servers_count_as_failed(subscriber):
    # GIVEN a refused server / WHEN the wave is summarized / THEN it counts as failed
    refused = {**rolled_back_line(), "outcome": "REFUSED", "failedStep": "Claim Server"}
    summary = wave.summarize(WAVE, EXECUTION, [refused])
    assert (summary["cutOver"], summary["failed"]) == (0, 1)
    assert "REFUSED  at Claim Server" in subscriber()[0]["Message"]


def test_summary_cause_holds_the_report_for_the_fail_state(subscriber):
    # GIVEN a failed wave
    summary = wave.summarize(WAVE, EXECUTION, [rolled_back_line()])

    # WHEN / THEN the Fail state's cause is the JSON report, without the subject
    cause = json.loads(summary["cause"])
    expected = {"wave": WAVE, "execution": EXECUTION, "total": 1, "cutOver": 0, "failed": 1}
    assert cause == {**expected, "servers": [rolled_back_line()]}


def test_a_wave_of_500_keeps_its_state_and_cause_within_step_functions_limits(subscriber):
    # GIVEN 500 report lines, one server in five rolled back with its error, as the Map leaves them in $.servers
    lines = [rolled_back_line() if i % 5 == 0 else cut_over_line(f"s-{i:017d}") for i in range(500)]
    options = Options().model_dump(by_alias=True)

    # WHEN the wave is summarized into $.summary
    summary = wave.summarize(WAVE, EXECUTION, lines)
    state = {"execution": EXECUTION, "wave": WAVE, "options": options, "servers": lines, "summary": summary}

    # THEN the state stays under the 256 KiB a state may carry, and the cause under the 32,768 characters a
    # Fail state keeps: the failed servers first, with how many were left out
    assert len(json.dumps(state).encode()) < 256 * 1024
    cause = json.loads(summary["cause"])
    assert len(summary["cause"]) <= 32_768
    assert cause["failed"] == 100 and cause["total"] == 500
    assert all(line["outcome"] == "ROLLED_BACK" for line in cause["servers"])
    assert cause["serversLeftOut"] == 500 - len(cause["servers"]) and cause["servers"]
    assert "servers" not in summary


def test_summary_without_a_topic_setting_fails_loudly(moto_world):
    # GIVEN no topic setting / WHEN the wave is summarized / THEN MissingSetting names it
    from pipeline.config import MissingSetting

    with pytest.raises(MissingSetting, match="NOTIFICATION_TOPIC_ARN"):
        wave.summarize(WAVE, EXECUTION, [cut_over_line()])


FROM_SHARED_IMAGE = {**THROUGH_FINALIZE, "targetImage": {"imageId": "ami-00000000000000003", "ready": False,
                                                          "attempts": 3}}
COPY_FAILED = caught("ImageFailed", json.dumps({"errorType": "ImageFailed",
                                               "errorMessage": "image ami-00000000000000003 is failed: no reason"}))


def test_a_target_copy_that_fails_after_finalize_is_a_follow_up():
    # GIVEN the default restore: the restored instance verified and finalized, the agent steps done, and the
    # target's own copy then failed
    current = server_state(**FROM_SHARED_IMAGE, managed={"ready": True}, agentInstall={"ready": True},
                           agentConfigure={"ready": True}, error=COPY_FAILED,
                           cleanup={"removed": [], "failures": [], "ready": True})

    # WHEN / THEN the server stays cut over, and the copy is the one thing left to do
    report = wave.server_report(current)
    assert report["outcome"] == "CUT_OVER_WITH_FOLLOW_UP"
    assert report["restoredInstanceId"] == "i-0restored0000001"
    assert report["failedStep"] == "Copy Image To Target"
    assert report["error"]["code"] == "ImageFailed"
    assert report["leftToDo"] == ["Copy Image To Target"]


def test_an_agent_failure_lists_the_target_copy_only_when_that_failed_too():
    # GIVEN the agent install failed after finalize; the target copy then finished in one case, failed in the other
    agent_failed = caught("AgentCommandFailed", json.dumps({"errorType": "AgentCommandFailed", "errorMessage": "x"}))
    copied = server_state(**{**FROM_SHARED_IMAGE, "targetImage": THROUGH_FINALIZE["targetImage"]},
                          managed={"ready": True}, error=agent_failed)
    not_copied = server_state(**FROM_SHARED_IMAGE, managed={"ready": True}, error=agent_failed,
                              targetCopyError=COPY_FAILED)

    # WHEN / THEN the agent failure stays the reported error, and the copy is left to do only when it failed
    assert wave.server_report(copied)["leftToDo"] == ["Install Agent", "Configure Agent"]
    report = wave.server_report(not_copied)
    assert report["failedStep"] == "Install Agent" and report["error"]["code"] == "AgentCommandFailed"
    assert report["leftToDo"] == ["Install Agent", "Configure Agent", "Copy Image To Target"]
