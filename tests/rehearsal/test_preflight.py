"""The preflight mode rehearsed: one healthy server and one server per problem kind, and nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3
import pytest

from sandbox import preflight as sandbox_preflight
from sandbox.runner import REGION, Sandbox
from tests.rehearsal.helpers import ROOT, load_event

WORLD = json.loads((ROOT / "sandbox" / "worlds" / "preflight-problems.json").read_text())
HEALTHY = "s-1a2b3c4d5e6f7pf01"
SKIPPED_WITHOUT_SUBNET = ["security-groups-in-subnet-vpc", "private-ip-free", "instance-type-offered"]
SKIPPED_WITHOUT_ROLE = ["subnet-exists", "security-groups-in-subnet-vpc", "instance-profile-exists", "private-ip-free",
                        "instance-type-offered", "vcpu-quota-headroom", "agent-config-parameter"]

# What an engineer expects of each server of events/preflight-wave.json in that world: the checks that do not
# pass (failed or skipped), the warnings, and a word of each failing check's fix.
EXPECTED = {
    HEALTHY: ([], [], {}),
    "s-1a2b3c4d5e6f7pf02": (["source-server-ready"], [], {"source-server-ready": "mark it ready for cutover"}),
    "s-1a2b3c4d5e6f7pf03": (["replication-healthy"], [], {"replication-healthy": "TCP 1500"}),
    "s-1a2b3c4d5e6f7pf04": (["replication-healthy"], [], {"replication-healthy": "maxReplicationLagSeconds"}),
    "s-1a2b3c4d5e6f7pf05": (["launch-disposition"], [], {"launch-disposition": "STARTED"}),
    "s-1a2b3c4d5e6f7pf06": ([], ["replication-key"], {}),
    "s-1a2b3c4d5e6f7pf07": (["subnet-exists", *SKIPPED_WITHOUT_SUBNET], [], {"subnet-exists": "target.subnetId"}),
    "s-1a2b3c4d5e6f7pf08": (["security-groups-in-subnet-vpc"], [],
                            {"security-groups-in-subnet-vpc": "target.securityGroupIds"}),
    "s-1a2b3c4d5e6f7pf09": (["security-groups-in-subnet-vpc"], [],
                            {"security-groups-in-subnet-vpc": "use security groups of vpc-"}),
    "s-1a2b3c4d5e6f7pf10": (["instance-profile-exists"], [], {"instance-profile-exists": "target.instanceProfile"}),
    "s-1a2b3c4d5e6f7pf11": (["private-ip-free"], [], {"private-ip-free": "target.privateIpAddress"}),
    "s-1a2b3c4d5e6f7pf12": (["instance-type-offered"], [], {"instance-type-offered": "us-east-1a"}),
    "s-1a2b3c4d5e6f7pf13": (["target-role-assumable", *SKIPPED_WITHOUT_ROLE], [],
                            {"target-role-assumable": "ExternalId"}),
    "s-1a2b3c4d5e6f7pf14": ([], ["sharing-key-usable"], {}),
    "s-1a2b3c4d5e6f7pf15": (["vcpu-quota-headroom"], [], {"vcpu-quota-headroom": "at least 4 vCPUs"}),
    "s-1a2b3c4d5e6f7pf16": (["agent-config-parameter"], [], {"agent-config-parameter": "AmazonCloudWatch-linux"}),
}


@pytest.fixture(scope="module")
def rehearsed():
    """The preflight wave run once in the problem world, with the inventory and ledger before and after."""
    with Sandbox(load_event("preflight-wave.json"), WORLD) as sandbox:
        before = (sandbox.world.inventory(), _ledger(sandbox))
        rehearsal = sandbox.rehearse()
        after = (rehearsal.inventory, _ledger(sandbox))
        servers = {server["sourceServerId"]: server for server in sandbox_preflight.server_results(rehearsal)}
    return rehearsal, servers, before, after


def _ledger(sandbox: Sandbox) -> list[dict]:
    return boto3.client("dynamodb", region_name=REGION).scan(TableName=sandbox.table)["Items"]


def test_the_preflight_fails_naming_every_failing_check_with_its_fix(rehearsed):
    rehearsal, servers, _, _ = rehearsed

    # THEN the execution failed as a preflight, and its cause lists each failing server's checks with fixes
    assert rehearsal.status == "FAILED" and rehearsal.error == "PreflightFailed"
    assert rehearsal.cause["mode"] == "preflight"
    assert (rehearsal.cause["total"], rehearsal.cause["passed"]) == (16, 3)
    failing = {entry["sourceServerId"]: [c["check"] for c in entry["checks"]] for entry in rehearsal.cause["failures"]}
    assert failing == {server: checks for server, (checks, _, _) in EXPECTED.items() if checks}
    assert all(c["fix"] for entry in rehearsal.cause["failures"] for c in entry["checks"])


@pytest.mark.parametrize("server_id", sorted(EXPECTED))
def test_each_server_fails_exactly_its_problem(rehearsed, server_id):
    _, servers, _, _ = rehearsed
    failed, warnings, fixes = EXPECTED[server_id]
    server = servers[server_id]

    assert server["failedChecks"] == failed
    assert server["warnings"] == warnings
    assert server["passed"] is (not failed)
    by_check = {check["check"]: check for check in server["checks"]}
    for check, words in fixes.items():
        assert words in by_check[check]["fix"], by_check[check]


def test_the_healthy_server_passes_every_check(rehearsed):
    _, servers, _, _ = rehearsed
    checks = servers[HEALTHY]["checks"]
    assert len(checks) == 13
    assert all(check["result"] == "pass" and check["fix"] is None for check in checks), checks


def test_the_preflight_changes_nothing_in_any_account_nor_in_the_ledger(rehearsed):
    rehearsal, _, (inventory_before, ledger_before), (inventory_after, ledger_after) = rehearsed
    assert inventory_after == inventory_before
    assert ledger_after == ledger_before == []
    # ... and its notification says it was a preflight
    (notification,) = rehearsal.notifications
    assert notification["subject"] == "Preflight of wave wave-2-preflight: 3 of 16 servers ready"
    assert notification["attributes"]["mode"] == "preflight"
    assert "This was a preflight: nothing was changed." in notification["message"]


def test_a_wave_whose_servers_all_pass_succeeds():
    # GIVEN only the healthy server of the preflight wave
    request = load_event("preflight-wave.json")
    request["servers"] = request["servers"][:1]
    with Sandbox(request, WORLD) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN the execution succeeded with the server's checks as its output
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    assert (rehearsal.output["mode"], rehearsal.output["passed"], rehearsal.output["failed"]) == ("preflight", 1, 0)
    assert rehearsal.output["servers"][0]["sourceServerId"] == HEALTHY


@pytest.mark.parametrize("world, code", [(None, 0), ("sandbox/worlds/preflight-problems.json", 1)])
def test_the_command_line_exits_0_when_every_server_passes_and_1_otherwise(tmp_path, world, code):
    # GIVEN the healthy server alone (whatever the world), or the whole wave in the problem world
    request = load_event("preflight-wave.json")
    if world is None:
        request["servers"], world = request["servers"][:1], "sandbox/worlds/preflight-problems.json"
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))

    done = subprocess.run([sys.executable, "-m", "sandbox", "preflight", str(path), "--world", world], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)

    # THEN the exit code says whether the wave is ready, and the table names server, check, result and fix
    assert done.returncode == code, done.stderr
    assert done.stdout.splitlines()[0].split() == ["server", "check", "result", "fix"]
    if code:
        assert "s-1a2b3c4d5e6f7pf15  vcpu-quota-headroom" in done.stdout
    else:
        assert f"{HEALTHY}  all 13 checks" in done.stdout
