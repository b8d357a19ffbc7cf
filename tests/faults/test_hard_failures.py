"""A hard failure at any step before finalize leaves every account as it was before the run."""

from __future__ import annotations

import pytest

from sandbox import faults
from sandbox.runner import Sandbox
from tests.faults.helpers import one_server_request, servers_of

# Each Task state before finalize, an AWS call it makes that is made to fail with access denied, the
# code the report gives, and the step it names (a step is its first state with the checks that follow).
STEPS = [
    ("Claim Server", "dynamodb:UpdateItem", "AccessDeniedException", "Claim Server"),
    ("Start Cutover", "mgn:StartCutover", "AccessDeniedException", "Start Cutover"),
    ("Check Cutover Launch", "mgn:DescribeJobs", "AccessDeniedException", "Start Cutover"),
    ("Create Image", "ec2:CreateImage", "UnauthorizedOperation", "Create Image"),
    ("Check Image", "ec2:DescribeImages", "UnauthorizedOperation", "Create Image"),
    ("Copy Image For Sharing", "ec2:CopyImage", "UnauthorizedOperation", "Copy Image For Sharing"),
    ("Check Sharing Copy", "ec2:DescribeImages", "UnauthorizedOperation", "Copy Image For Sharing"),
    # After the grant and the launch permission: rollback must take back a half-done share.
    ("Share With Target", "ec2:ModifySnapshotAttribute", "UnauthorizedOperation", "Share With Target"),
    ("Copy Image To Target", "ec2:CopyImage", "UnauthorizedOperation", "Copy Image To Target"),
    ("Check Target Image", "ec2:DescribeImages", "UnauthorizedOperation", "Copy Image To Target"),
    ("Launch Restored Instance", "ec2:RunInstances", "UnauthorizedOperation", "Launch Restored Instance"),
    # The restored instance runs but cannot be verified: rollback must terminate it.
    ("Check Restored Instance", "ec2:DescribeInstanceStatus", "UnauthorizedOperation", "Launch Restored Instance"),
    ("Finalize Cutover", "mgn:FinalizeCutover", "AccessDeniedException", "Finalize Cutover"),
]


@pytest.mark.parametrize(("state", "operation", "code", "step"), STEPS, ids=[state for state, *_ in STEPS])
def test_a_hard_failure_before_finalize_leaves_the_inventory_as_before_the_run(state, operation, code, step):
    # GIVEN a one-server wave whose state fails with access denied on one of its AWS calls (the target image is
    # checked before finalize only by the classic restore from the target's copy)
    request = one_server_request()
    if state == "Check Target Image":
        request["options"] = {**request.get("options", {}), "restoreFrom": "targetImage"}
    with Sandbox(request, faults=[f"{state}/{operation}:denied"]) as sandbox:
        before = sandbox.world.inventory()

        # WHEN it is rehearsed
        rehearsal = sandbox.rehearse().as_json()

    # THEN the server failed at that step with the AWS error ...
    assert rehearsal["status"] == "FAILED"
    (server,) = servers_of(rehearsal)
    assert server["outcome"] in ("ROLLED_BACK", "REFUSED")
    assert server["failedStep"] == step
    assert server["error"]["code"] == code
    # ... and every account holds what it held before (terminated instances aside), MGN back at ready
    assert faults.differences(before, rehearsal["inventory"]) == {"duplicates": [], "leaks": [], "missing": []}
    assert [s["lifeCycle"] for s in rehearsal["inventory"]["mgn"]["sourceServers"]] == ["READY_FOR_CUTOVER"]
