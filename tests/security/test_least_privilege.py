"""Least privilege, proven by rehearsal: no call of the scenarios is refused, and nothing is granted unexplained."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from sandbox import iam
from sandbox.runner import Sandbox
from tests.rehearsal.helpers import load_event


@pytest.fixture
def report(scenarios) -> iam.Report:
    return scenarios[0]


def test_the_scenarios_end_as_designed(report):
    assert report.outcomes == {"console wave": "SUCCEEDED", "MGN console launch event": "SUCCEEDED",
                               "MGN wave": "SUCCEEDED", "cutover launch fails in MGN": "FAILED",
                               "restore fails in the target account": "FAILED",
                               "approval gate, approved": "SUCCEEDED", "preflight wave": "FAILED"}


def test_no_call_of_any_scenario_is_refused_by_the_templates_policies(report):
    # GIVEN every call each function made, in the migration account and through the target role
    # THEN none was refused
    assert [decision.describe() for decision in report.denied] == []
    # ... and every role that acts was seen acting
    assert set(report.used) == set(report.granted)


def test_every_permission_granted_and_never_used_is_explained_in_the_docs(report):
    # GIVEN the table of docs/iam.md
    explained = iam.explanations()

    # THEN each unused permission has its reason there, and no reason is left for one now used
    assert report.unexplained(explained) == []
    assert report.stale_explanations(explained) == []
    assert all(len(reason) > 20 for reason in explained.values())


def test_a_call_the_policy_does_not_allow_fails_the_way_aws_refuses_it(tmp_path):
    # GIVEN a sandbox whose Create Image function may no longer create images
    request = load_event("console-wave.json")
    request = {**request, "servers": request["servers"][:1]}
    with Sandbox(request) as sandbox:
        policy = sandbox.iam.policies["CreateImageFunction"]
        policy.statements = [s for s in policy.statements if s["Sid"] not in ("ImageCutoverInstances",
                                                                                "CreateImagesAndSnapshots")]
        before = sandbox.world.inventory()["accounts"]["123456789012"]["images"]

        # WHEN the wave is rehearsed
        rehearsal = sandbox.rehearse()
        refused = sandbox.iam.denied

    # THEN CreateImage was refused with EC2's own error, and the server was rolled back
    assert rehearsal.status == "FAILED"
    (server,) = rehearsal.cause["servers"]
    assert server["outcome"] == "ROLLED_BACK" and server["failedStep"] == "Create Image"
    assert server["error"]["code"] == "UnauthorizedOperation"
    refusal = "is not authorized to perform: ec2:CreateImage on resource: arn:aws:ec2:us-east-1:123456789012:instance/"
    assert refusal in server["error"]["message"]
    assert [d.request.action for d in refused] == ["ec2:CreateImage"]
    assert rehearsal.inventory["accounts"]["123456789012"]["images"] == before


def test_enforcement_can_be_turned_off_and_still_records():
    # GIVEN MGN's launch result event for a server without placement tags, and a Normalize Request
    # function whose policy no longer lets it read source servers
    event = load_event("mgn-launch-result.json")
    event["resources"] = ["arn:aws:mgn:us-east-1:123456789012:source-server/s-1a2b3c4d5e6f70001"]
    event["detail"]["job-id"] = "mgnjob-1a2b3c4d5e6f70001"
    request = load_event("console-wave.json")
    for enforce in (True, False):
        with Sandbox(request, enforce_iam=enforce) as sandbox:
            sandbox.iam.policies["NormalizeRequestFunction"].statements = []

            # WHEN the function is invoked with it
            with pytest.raises(Exception) as raised:
                sandbox.invoke("NormalizeRequestFunction", {"input": event, "execution": "wave-1-rehearsal"})

        # THEN enforced, MGN refuses the read as AWS would; not enforced, the read goes through (the
        # request then fails on the missing tags) and the refusal is on record either way
        if enforce:
            assert isinstance(raised.value, ClientError)
            assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
            assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        else:
            assert type(raised.value).__name__ == "RequestInvalid"
        assert [d.request.action for d in sandbox.iam.denied] == ["mgn:DescribeSourceServers"]


@pytest.mark.parametrize("operator, context, holds", [
    ("StringEquals", {"aws:ResourceTag/mgn-cutover:managed": "true"}, True),
    ("StringEquals", {}, False),
    ("StringEquals", {"aws:ResourceTag/mgn-cutover:managed": "false"}, False),
])
def test_tag_conditions_hold_only_on_the_tag_value(operator, context, holds):
    policy = iam.Policy([{"Sid": "S", "Effect": "Allow", "Action": "ec2:DeleteSnapshot", "Resource": "*",
                          "Condition": {operator: {"aws:ResourceTag/mgn-cutover:managed": "true"}}}])
    assert policy.evaluate(iam.Request("ec2:DeleteSnapshot", ["arn:aws:ec2:us-east-1::snapshot/snap-1"],
                                       context))[0] is holds


def test_a_condition_on_a_key_the_sandbox_cannot_know_is_not_satisfied():
    policy = iam.Policy([{"Sid": "S", "Effect": "Allow", "Action": "ec2:*", "Resource": "*",
                          "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}}}])
    assert policy.evaluate(iam.Request("ec2:DescribeImages", ["*"], {"aws:SourceVpce": "vpce-1"}))[0] is False


def test_snapshots_can_be_shared_only_with_the_allowlist_and_never_publicly():
    # GIVEN the share function's policy as the sandbox resolves it
    with Sandbox(load_event("console-wave.json")) as sandbox:
        policy = sandbox.iam.policies["ShareImageFunction"]
    snapshot = "arn:aws:ec2:us-east-1::snapshot/snap-0123"
    managed = {"aws:ResourceTag/mgn-cutover:managed": "true"}

    def allowed(context):
        return policy.evaluate(iam.Request("ec2:ModifySnapshotAttribute", [snapshot], {**managed, **context}))[0]

    # THEN an allowlisted account may be added, an outsider or "all" may not
    assert allowed({"ec2:Add/userId": ["222222222222"]})
    assert not allowed({"ec2:Add/userId": ["444444444444"]})
    assert not allowed({"ec2:Add/group": ["all"]})
