"""Whole waves rehearsed in the sandbox: the real state machine, the real handlers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sandbox.runner import Sandbox
from tests.rehearsal.helpers import (
    MIGRATION_ACCOUNT,
    ROOT,
    lifecycle_of,
    live_instances,
    load_event,
    random_request,
)


def assert_cut_over(request: dict, rehearsal) -> None:
    """Everything a migration engineer checks after a wave that succeeded."""
    inventory = rehearsal.inventory
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    assert {s["sourceServerId"]: s["outcome"] for s in rehearsal.output["servers"]} == {
        s["sourceServerId"]: "CUT_OVER" for s in request["servers"]
    }

    for account in {s["target"]["accountId"] for s in request["servers"]}:
        wanted = [s for s in request["servers"] if s["target"]["accountId"] == account]
        instances = live_instances(inventory, account)
        # One running instance per server, where the request put it.
        assert sorted(i["privateIp"] for i in instances) == sorted(s["target"]["privateIpAddress"] for s in wanted)
        for server in wanted:
            instance = next(i for i in instances if i["privateIp"] == server["target"]["privateIpAddress"])
            assert instance["state"] == "running"
            assert instance["subnet"] == server["target"]["subnetId"]
            assert instance["tags"]["Name"] == server["target"]["tags"]["Name"]
            if "instanceType" in server["target"]:
                assert instance["type"] == server["target"]["instanceType"]
            # Volumes under a key of the target account itself, never the migration account's:
            # the requested one, else the account's own default EBS key.
            assert instance["volumeKeys"]
            if server["target"].get("kmsKeyId"):
                assert all(key.startswith(f"arn:aws:kms:us-east-1:{account}:key/") for key in instance["volumeKeys"])
            else:
                assert instance["volumeKeys"] == ["aws/ebs"] * len(instance["volumeKeys"])
            commands = [c for c in inventory["accounts"][account]["ssmCommands"]
                    if instance["id"] in c["instanceIds"]]
            assert sorted(c["document"] for c in commands) == ["AWS-ConfigureAWSPackage", "AmazonCloudWatch-ManageAgent"]
            assert all(c["status"] == "Success" for c in commands)

    assert set(lifecycle_of(inventory).values()) == {"CUTOVER"}
    migration = inventory["accounts"][MIGRATION_ACCOUNT]
    assert migration["images"] == [] and migration["snapshots"] == [], "intermediates left in the migration account"
    assert migration["kmsGrants"] == []
    assert [i["state"] for i in migration["instances"]] == ["terminated"] * len(request["servers"])


def test_console_wave_cuts_over_both_servers_into_their_accounts():
    # GIVEN the console input of a two-server wave into two target accounts
    request = load_event("console-wave.json")

    # WHEN it is rehearsed
    with Sandbox(request) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN both servers run in their accounts, finalized in MGN, agent installed, nothing left over
    assert_cut_over(request, rehearsal)
    (notification,) = rehearsal.notifications
    assert notification["subject"] == "Cutover wave wave-1: 2 of 2 cut over"
    assert notification["attributes"] == {"wave": "wave-1", "outcome": "SUCCEEDED", "failed": "0"}


@pytest.mark.parametrize("servers,seed", [(1, 11), (2, 12), (3, 13), (4, 14), (5, 15)])
def test_any_valid_wave_of_one_to_five_servers_cuts_over(servers, seed):
    # GIVEN a request of one to five servers over two target accounts, placements varied by seed
    request = random_request(seed, servers)

    # WHEN it is rehearsed
    with Sandbox(request) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN every server is cut over where its request put it
    assert_cut_over(request, rehearsal)


def test_cutover_requested_event_rehearses_like_the_console_input():
    # GIVEN the custom EventBridge event whose detail is a request
    event = load_event("cutover-requested.json")

    # WHEN the event itself is the execution's input, as the EventBridge rule passes it
    with Sandbox(event) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN the wave in its detail is cut over
    assert_cut_over(event["detail"], rehearsal)
    assert rehearsal.output["wave"] == "wave-2"


def test_rehearse_json_prints_status_output_and_inventory(tmp_path):
    # GIVEN a three-server request in a file
    request = random_request(21, 3)
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))

    # WHEN the command line rehearses it with --json
    done = subprocess.run([sys.executable, "-m", "sandbox", "rehearse", str(path), "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)

    # THEN stdout is one JSON object, and it says what the sandbox holds
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert set(printed) >= {"status", "output", "inventory"}
    assert printed["status"] == "SUCCEEDED"
    assert len(printed["output"]["servers"]) == 3
    assert set(printed["inventory"]["accounts"]) == {MIGRATION_ACCOUNT, "222222222222", "333333333333"}


@pytest.mark.parametrize(
    "field,value,error,named",
    [
        # A malformed subnet id: the request is refused, naming the field.
        (("servers", 1, "target", "subnetId"), "subnet-XYZ", "RequestInvalid", "servers[1].target.subnetId"),
        # An account outside the allowlist: refused before anything could be shared with it.
        (("servers", 0, "target", "accountId"), "444444444444", "TargetNotAllowed", "444444444444"),
    ],
)
def test_a_refused_request_fails_in_the_first_state_and_changes_nothing(field, value, error, named):
    # GIVEN a world built for the console wave, and the same request with one field spoilt
    request = load_event("console-wave.json")
    spoilt = json.loads(json.dumps(request))
    parent = spoilt
    for key in field[:-1]:
        parent = parent[key]
    parent[field[-1]] = value

    # WHEN the spoilt request is rehearsed
    with Sandbox(request) as sandbox:
        before = sandbox.world.inventory()
        rehearsal = sandbox.rehearse(spoilt)

    # THEN the execution fails with the named error, and no account changed
    assert rehearsal.status == "FAILED"
    assert rehearsal.error == error
    assert named in json.dumps(rehearsal.cause)
    assert rehearsal.inventory == before
