"""The approval gate before finalize, rehearsed: the wave pauses, then approve, reject or the deadline decide."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import boto3
import pytest

from sandbox.runner import Sandbox
from tests.rehearsal.helpers import MIGRATION_ACCOUNT, ROOT, lifecycle_of, live_instances, load_event

# How often, and how many times, a test looks whether the gate is waiting (a bound, not a timing).
GATE_CHECKS = 1500
GATE_CHECK_INTERVAL = 0.05


def gated_wave(timeout_seconds: int = 3600) -> dict:
    """The console wave of two servers, with the approval gate on."""
    request = load_event("console-wave.json")
    request["options"]["approval"] = {"required": True, "timeoutSeconds": timeout_seconds}
    return request


def wait_for_gate(sandbox: Sandbox, execution_arn: str) -> list[dict]:
    """The approval notifications, once the wave's went out; fails if the execution ends or it never comes."""
    from pipeline import approval

    for _ in range(GATE_CHECKS):
        if approval.notified(execution_arn.rsplit(":", 1)[1], table=sandbox.approval_table):
            return sandbox.notifications()
        status = _status(execution_arn)
        assert status == "RUNNING", f"the execution ended ({status}) before its approval gate"
        time.sleep(GATE_CHECK_INTERVAL)
    raise AssertionError(f"no approval notification after {GATE_CHECKS} checks")


def _status(execution_arn: str) -> str:
    return boto3.client("stepfunctions", region_name="us-east-1").describe_execution(
        executionArn=execution_arn)["status"]


def assert_rolled_back(rehearsal, before: dict, message: str) -> None:
    """Every server back where it was: READY_FOR_CUTOVER, nothing left in any account, the reason reported."""
    assert rehearsal.status == "FAILED"
    assert rehearsal.error == "WaveFailed"
    for server in rehearsal.cause["servers"]:
        assert server["outcome"] == "ROLLED_BACK", server
        assert server["failedStep"] == "Wait For Approval"
        assert message in server["error"]["message"]
        assert server["rollback"]["complete"] is True
    after = rehearsal.inventory
    for account in (MIGRATION_ACCOUNT, "222222222222", "333333333333"):
        for kind in ("images", "snapshots", "kmsGrants"):
            assert after["accounts"][account][kind] == before["accounts"][account][kind], (account, kind)
        assert live_instances(after, account) == [], account
    assert set(lifecycle_of(after).values()) == {"READY_FOR_CUTOVER"}


def test_a_gated_wave_pauses_before_finalize_and_approve_finishes_it():
    # GIVEN a two-server wave with the approval gate on
    request = gated_wave()
    with Sandbox(request) as sandbox:
        # WHEN it runs until its gate
        arn = sandbox.start(request, name="wave-1-gated")
        notifications = wait_for_gate(sandbox, arn)
        paused = sandbox.world.inventory()
        pending = sandbox.pending(arn)

        # THEN nothing is finalized yet, both restored instances run, and one notification lists them
        assert set(lifecycle_of(paused).values()) == {"CUTTING_OVER"}
        restored = {account: live_instances(paused, account) for account in ("222222222222", "333333333333")}
        assert [i["state"] for instances in restored.values() for i in instances] == ["running", "running"]
        (notification,) = notifications
        assert notification["subject"] == "Approval needed: wave-1 — 2 servers ready to finalize"
        for instances in restored.values():
            (instance,) = instances
            assert instance["id"] in notification["message"] and instance["privateIp"] in notification["message"]
        assert "./scripts/cutover approve wave-1-gated" in notification["message"]
        assert sorted((p["sourceServerId"], p["privateIpAddress"]) for p in pending) == [
            ("s-1a2b3c4d5e6f70001", "10.20.1.10"), ("s-1a2b3c4d5e6f70002", "10.30.2.20")]

        # WHEN it is approved (twice: the second answers nothing)
        approved = sandbox.approve(arn, "alice")
        again = sandbox.approve(arn, "alice")
        described = sandbox.wait(arn)
        after = sandbox.world.inventory()

    # THEN both servers are cut over, finalized in MGN, on the instances that were approved
    assert sorted(approved) == ["s-1a2b3c4d5e6f70001", "s-1a2b3c4d5e6f70002"] and again == []
    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert {s["outcome"] for s in output["servers"]} == {"CUT_OVER"}
    assert {s["restoredInstanceId"] for s in output["servers"]} == {
        i["id"] for instances in restored.values() for i in instances}
    assert set(lifecycle_of(after).values()) == {"CUTOVER"}


def test_reject_rolls_the_wave_back_and_the_report_names_who_and_why():
    # GIVEN a gated two-server wave, and the answer it will get at its gate
    with Sandbox(gated_wave()) as sandbox:
        before = sandbox.world.inventory()
        sandbox.gate_answer = ("reject", "bob", "smoke test failed on web-01")

        # WHEN it is rehearsed
        rehearsal = sandbox.rehearse()

    # THEN both servers were rolled back from the gate, and the report says who rejected and why
    assert_rolled_back(rehearsal, before, "rejected by bob: smoke test failed on web-01")
    assert {s["error"]["type"] for s in rehearsal.cause["servers"]} == {"ApprovalRejected"}
    subjects = [n["subject"] for n in rehearsal.notifications]
    assert subjects == ["Approval needed: wave-1 — 2 servers ready to finalize", "Cutover wave wave-1: 0 of 2 cut over"]


def test_the_deadline_rejects_by_itself():
    # GIVEN a gated wave whose gate waits one second, and nobody who answers
    with Sandbox(gated_wave(timeout_seconds=1)) as sandbox:
        before = sandbox.world.inventory()

        # WHEN it is rehearsed
        rehearsal = sandbox.rehearse()

    # THEN the deadline rejected it: everything rolled back, and the report says the deadline passed
    assert_rolled_back(rehearsal, before, "approval deadline passed")


def test_a_server_failing_before_the_gate_does_not_hold_the_others_back():
    # GIVEN a gated wave whose second server's cutover launch fails in MGN
    request = gated_wave()
    failing = request["servers"][1]["sourceServerId"]
    with Sandbox(request, {"servers": {failing: {"launchFails": True}}}) as sandbox:
        sandbox.gate_answer = ("approve", "alice", None)

        # WHEN it is rehearsed
        rehearsal = sandbox.rehearse()

    # THEN the notification came for the server still going, which was approved and cut over
    approval_request, _summary = rehearsal.notifications
    assert approval_request["subject"] == "Approval needed: wave-1 — 1 server ready to finalize"
    assert f"{failing}  ROLLED_BACK" in approval_request["message"]
    outcomes = {s["sourceServerId"]: s["outcome"] for s in rehearsal.cause["servers"]}
    assert outcomes == {"s-1a2b3c4d5e6f70001": "CUT_OVER", failing: "ROLLED_BACK"}
    assert lifecycle_of(rehearsal.inventory) == {"s-1a2b3c4d5e6f70001": "CUTOVER", failing: "READY_FOR_CUTOVER"}


def test_a_server_failing_last_sends_the_notification_for_the_others():
    # GIVEN a gated wave whose second server is large (its copies take longest) and whose security group is gone,
    # so it fails at its launch after the first server is already waiting at the gate
    request = gated_wave()
    slow = request["servers"][1]
    with Sandbox(request, {"servers": {slow["sourceServerId"]: {"diskSizesGiB": [500]}}}) as sandbox:
        target = slow["target"]
        sandbox.world.client("ec2", target["accountId"]).delete_security_group(GroupId=target["securityGroupIds"][0])
        sandbox.gate_answer = ("approve", "alice", None)

        # WHEN it is rehearsed
        rehearsal = sandbox.rehearse()
        gate = boto3.client("dynamodb", region_name="us-east-1").get_item(
            TableName=sandbox.approval_table, Key={"execution": {"S": rehearsal.execution},
                                                   "sourceServerId": {"S": "#gate"}})["Item"]

    # THEN the approval request for the first server went out, and it was then cut over
    approval_request, _summary = rehearsal.notifications
    assert approval_request["subject"] == "Approval needed: wave-1 — 1 server ready to finalize"
    assert f"{slow['sourceServerId']}  ROLLED_BACK" in approval_request["message"]
    outcomes = {s["sourceServerId"]: (s["outcome"], s.get("failedStep")) for s in rehearsal.cause["servers"]}
    assert outcomes == {"s-1a2b3c4d5e6f70001": ("CUT_OVER", None),
                        slow["sourceServerId"]: ("ROLLED_BACK", "Launch Restored Instance")}
    # ... sent once, by the failed server's Release Server (the gate records who sent it)
    assert gate["notifier"]["S"] == slow["sourceServerId"]


@pytest.mark.parametrize("approval_option, named", [
    ({"required": True, "timeoutSeconds": 0}, "options.approval.timeoutSeconds"),
    ({"required": True, "timeoutSeconds": 86401}, "options.approval.timeoutSeconds"),
    ({"required": "true"}, "options.approval.required"),
    ({"required": True, "approver": "alice"}, "options.approval.approver"),
])
def test_bad_approval_options_are_refused_by_normalize_naming_the_field(approval_option, named):
    # GIVEN the console wave with a bad approval option
    request = load_event("console-wave.json")
    spoilt = json.loads(json.dumps(request))
    spoilt["options"]["approval"] = approval_option

    # WHEN it is rehearsed
    with Sandbox(request) as sandbox:
        before = sandbox.world.inventory()
        rehearsal = sandbox.rehearse(spoilt)

    # THEN the first state refuses it, naming the field, and nothing changed
    assert rehearsal.status == "FAILED"
    assert rehearsal.error == "RequestInvalid"
    assert named in json.dumps(rehearsal.cause)
    assert rehearsal.inventory == before


def test_command_line_rehearsal_approves_at_the_gate(tmp_path):
    # GIVEN a gated wave as a request file
    request_file = tmp_path / "gated-wave.json"
    request_file.write_text(json.dumps(gated_wave()))

    # WHEN it is rehearsed from the command line with --approve
    done = subprocess.run([sys.executable, "-m", "sandbox", "rehearse", str(request_file), "--approve", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)

    # THEN it cut over, and the approval request was among the notifications
    assert done.returncode == 0, done.stderr
    rehearsal = json.loads(done.stdout)
    assert {s["outcome"] for s in rehearsal["output"]["servers"]} == {"CUT_OVER"}
    assert [n["subject"] for n in rehearsal["notifications"]][0] == (
        "Approval needed: wave-1 — 2 servers ready to finalize")


def test_command_line_reject_needs_a_reason():
    # WHEN a rehearsal is asked to reject without a reason
    done = subprocess.run([sys.executable, "-m", "sandbox", "rehearse", str(ROOT / "events" / "console-wave.json"),
                           "--reject", " "], cwd=ROOT, capture_output=True, text=True, timeout=300)

    # THEN it is refused as a usage error, before anything runs
    assert done.returncode == 2
    assert "--reject needs a reason" in done.stderr
