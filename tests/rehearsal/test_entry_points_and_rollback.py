"""The EventBridge entry points, and what a failure before finalize leaves behind: nothing."""

from __future__ import annotations

import json

from sandbox.runner import Sandbox
from tests.rehearsal.helpers import MIGRATION_ACCOUNT, ROOT, lifecycle_of, live_instances, load_event

MGN_WORLD = json.loads((ROOT / "sandbox" / "worlds" / "mgn-console-launch.json").read_text())


def test_mgn_launch_result_event_continues_a_console_cutover_from_its_tags():
    # GIVEN a cutover launched in the MGN console, and the server's placement in its tags
    event = load_event("mgn-launch-result.json")
    server_id = "s-1a2b3c4d5e6f70003"

    # WHEN MGN's launch result event starts the pipeline
    with Sandbox(event, MGN_WORLD) as sandbox:
        rehearsal = sandbox.rehearse()
        jobs = list(sandbox.world.mgn.jobs)

    # THEN the pipeline picked up the console's job (it started none) and restored the server
    # where its tags say
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    assert jobs == [event["detail"]["job-id"]]
    (instance,) = live_instances(rehearsal.inventory, "222222222222")
    assert (instance["subnet"], instance["privateIp"], instance["type"]) == (
        "subnet-0a1b2c3d4e5f60001", "10.20.1.30", "m5.large")
    assert lifecycle_of(rehearsal.inventory) == {server_id: "CUTOVER"}


def test_a_cutover_launch_that_fails_rolls_the_server_back_to_ready():
    # GIVEN a wave whose second server's cutover launch fails in MGN
    request = load_event("console-wave.json")
    failing = request["servers"][1]["sourceServerId"]
    world = {"servers": {failing: {"launchFails": True}}}

    # WHEN it is rehearsed
    with Sandbox(request, world) as sandbox:
        before = sandbox.world.inventory()
        rehearsal = sandbox.rehearse()

    # THEN the execution fails, the first server is cut over, the second is back where it was
    assert rehearsal.status == "FAILED"
    assert rehearsal.error == "WaveFailed"
    outcomes = {s["sourceServerId"]: s for s in rehearsal.cause["servers"]}
    assert outcomes[failing]["outcome"] == "ROLLED_BACK"
    assert outcomes[failing]["failedStep"] == "Start Cutover"
    assert outcomes[failing]["error"]["type"] == "CutoverLaunchFailed"
    assert lifecycle_of(rehearsal.inventory)[failing] == "READY_FOR_CUTOVER"
    assert rehearsal.inventory["accounts"]["333333333333"] == before["accounts"]["333333333333"]
    assert rehearsal.notifications[0]["attributes"]["outcome"] == "FAILED"


def test_a_restore_that_fails_in_the_target_account_leaves_nothing_in_either_account():
    # GIVEN a one-server wave whose target security group is gone by the time of the launch
    request = load_event("console-wave.json")
    request = {**request, "servers": request["servers"][:1]}
    server_id = request["servers"][0]["sourceServerId"]
    group = request["servers"][0]["target"]["securityGroupIds"][0]

    with Sandbox(request) as sandbox:
        sandbox.world.client("ec2", "222222222222").delete_security_group(GroupId=group)
        before = sandbox.world.inventory()

        # WHEN it is rehearsed
        rehearsal = sandbox.rehearse()

    # THEN it failed at the launch with EC2's own error, and rollback removed every image,
    # snapshot, permission and grant in both accounts, and readied the server again
    assert rehearsal.status == "FAILED"
    (server,) = rehearsal.cause["servers"]
    assert server["outcome"] == "ROLLED_BACK"
    assert server["failedStep"] == "Launch Restored Instance"
    assert server["error"]["code"] == "InvalidGroup.NotFound"
    assert server["rollback"]["complete"] is True
    after = rehearsal.inventory
    for account in (MIGRATION_ACCOUNT, "222222222222"):
        for kind in ("images", "snapshots", "kmsGrants"):
            assert after["accounts"][account][kind] == before["accounts"][account][kind], (account, kind)
    assert live_instances(after, MIGRATION_ACCOUNT) == []
    assert live_instances(after, "222222222222") == []
    assert lifecycle_of(after) == {server_id: "READY_FOR_CUTOVER"}
