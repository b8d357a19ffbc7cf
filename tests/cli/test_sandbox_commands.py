"""The commands on sandbox rehearsals: watching a five-server wave to its end, and status and cleanup
inside one Sandbox after a run that failed and could not roll back everything."""

from __future__ import annotations

import io
import json
import time

from mgncutover import cli, commands, progress, sandbox_backend
from sandbox.runner import Sandbox
from tests.cli.helpers import ROOT

FIVE_SERVERS = ROOT / "events" / "five-server-wave.json"
TWO_SERVERS = ROOT / "events" / "console-wave.json"
FIRST_SERVER, SECOND_SERVER = "s-1a2b3c4d5e6f70001", "s-1a2b3c4d5e6f70002"
MIGRATION = "123456789012"


def test_watching_a_five_server_wave_shows_every_server_to_its_outcome():
    # GIVEN the five-server wave over two target accounts
    servers = [server["sourceServerId"] for server in json.loads(FIVE_SERVERS.read_text())["servers"]]

    # WHEN it is started in the sandbox and watched without a terminal
    out = io.StringIO()
    code = cli.main(["--sandbox", "start", str(FIVE_SERVERS), "--watch", "--plain"], out=out)

    # THEN it succeeded, and the output has, per server, change lines through the steps to CUT_OVER ...
    lines = out.getvalue().splitlines()
    assert code == commands.EXIT_OK
    assert lines[0].startswith("arn:aws:states:") and ":execution:mgn-cutover-cutover:wave-2-" in lines[0]
    for server in servers:
        changes = [line for line in lines if line.startswith("[") and f"] {server} " in line]
        assert len(changes) >= 5, changes
        assert "Release Server" in changes[-1] and changes[-1].endswith("CUT_OVER")
    # ... and the final table: one row per server at its outcome, then a full bar
    table = lines[lines.index("") + 1:]
    assert table[0].startswith("Execution wave-2-") and "SUCCEEDED" in table[0]
    assert sorted(line.split()[0] for line in table[2:-1]) == sorted(servers)
    assert all(line.split()[-1] == "CUT_OVER" for line in table[2:-1])
    steps = 5 * len(progress.STEPS)
    assert table[-1].endswith(f"] 5/5 servers done, {steps}/{steps} steps")


def test_status_and_cleanup_after_a_run_whose_rollback_left_images_behind():
    # GIVEN a wave whose first server to launch fails there, and whose rollback may not remove images
    request = json.loads(TWO_SERVERS.read_text())
    faults = ["Launch Restored Instance/ec2:RunInstances:denied", "Roll Back/ec2:DeregisterImage:denied:1-3"]
    with Sandbox(request, faults=faults) as sandbox:
        run = sandbox.rehearse(name="wave-1-left-over")
        # A failed wave gives its report as the cause of its failure; which server launched first varies.
        report = {line["outcome"]: line for line in run.cause["servers"]}
        assert sorted(report) == ["CUT_OVER", "ROLLBACK_INCOMPLETE"]
        failed, cut_over = report["ROLLBACK_INCOMPLETE"], report["CUT_OVER"]
        out = io.StringIO()
        ctx = sandbox_backend.context_for(sandbox, out, json_output=True)

        # WHEN status is asked for the failed server
        code = commands.status(ctx, failed["sourceServerId"])
        found = json.loads(out.getvalue())

        # THEN the ledger's leftovers are listed with their accounts (exit 1): two images in the migration
        # account, with their snapshots, and the target's copy in the server's target account
        assert code == commands.EXIT_FAILED
        assert (found["holder"], found["claimStatus"], found["outcome"]) == (
            "wave-1-left-over", "RELEASED", "ROLLBACK_INCOMPLETE")
        where = {item["artifact"]: item["account"] for item in found["leftOver"]}
        assert where == {"image": MIGRATION, "sharedImage": MIGRATION, "targetImage": failed["targetAccountId"]}
        assert all(item["snapshots"] for item in found["leftOver"] if item["account"] == MIGRATION)
        images = {account: [image["id"] for image in holdings["images"]]
                  for account, holdings in sandbox.world.inventory()["accounts"].items()}
        left_images = [item["id"] for item in found["leftOver"]]
        assert set(left_images) <= set(images[MIGRATION] + images[failed["targetAccountId"]])

        # WHEN cleanup runs dry, then for real
        out.seek(0), out.truncate()
        dry = commands.cleanup(ctx, failed["sourceServerId"], dry_run=True)
        assert dry == commands.EXIT_FAILED and json.loads(out.getvalue())["dryRun"] is True
        assert set(left_images) <= {image["id"] for image in sandbox.world.inventory()["accounts"][MIGRATION][
            "images"]} | set(images[failed["targetAccountId"]])
        out.seek(0), out.truncate()
        code = commands.cleanup(ctx, failed["sourceServerId"])
        cleaned = json.loads(out.getvalue())

        # THEN nothing is left (exit 0): none of those images, nor their snapshots, exists in either account
        assert code == commands.EXIT_OK and cleaned["leftOver"] == []
        inventory = sandbox.world.inventory()["accounts"]
        for account in (MIGRATION, failed["targetAccountId"]):
            assert not set(left_images) & {image["id"] for image in inventory[account]["images"]}, account
        snapshots = [snap for item in found["leftOver"] for snap in item.get("snapshots", [])]
        assert not set(snapshots) & {snap["id"] for snap in inventory[MIGRATION]["snapshots"]}

        # ... while the server that cut over keeps what it restored, which status calls kept, not left over
        out.seek(0), out.truncate()
        assert commands.status(ctx, cut_over["sourceServerId"]) == commands.EXIT_OK
        kept = json.loads(out.getvalue())
        assert kept["leftOver"] == [] and {item["artifact"] for item in kept["kept"]} == {"targetImage",
                                                                                           "restoredInstance"}
        out.seek(0), out.truncate()
        assert commands.cleanup(ctx, cut_over["sourceServerId"]) == commands.EXIT_OK
        restored = [i for i in sandbox.world.inventory()["accounts"][cut_over["targetAccountId"]]["instances"]
                    if i["id"] == cut_over["restoredInstanceId"]]
        assert [i["state"] for i in restored] == ["running"]


# -- the approval gate and preflight ----------------------------------------------------------------------------


def _one_server_with_approval(tmp_path) -> tuple[dict, str]:
    request = json.loads(TWO_SERVERS.read_text())
    request["servers"] = request["servers"][:1]
    request["options"]["approval"] = {"required": True, "timeoutSeconds": 3600}
    path = tmp_path / "approval.json"
    path.write_text(json.dumps(request))
    return request, str(path)


def test_start_with_approve_answers_the_gate_and_the_server_cuts_over(tmp_path):
    # GIVEN a one-server wave that waits for approval before finalize
    _, path = _one_server_with_approval(tmp_path)

    # WHEN it is started in the sandbox, watched, and approved once it waits
    out = io.StringIO()
    code = cli.main(["--sandbox", "start", path, "--watch", "--plain", "--approve"], out=out)

    # THEN the watch showed the server at the gate, then finalized and cut over
    changes = [line for line in out.getvalue().splitlines() if line.startswith("[") and FIRST_SERVER in line]
    steps = [line.split("] ", 1)[1][21:48].strip() for line in changes]
    assert code == commands.EXIT_OK
    assert steps.index("Wait For Approval") < len(steps) - 1
    assert changes[-1].endswith("CUT_OVER")


def test_reject_sends_the_waiting_server_back_and_approve_then_has_nothing_to_answer(tmp_path):
    # GIVEN a one-server wave waiting at the gate in the sandbox
    request, _ = _one_server_with_approval(tmp_path)
    with Sandbox(request) as sandbox:
        out = io.StringIO()
        ctx = sandbox_backend.context_for(sandbox, out)
        _, arn = commands.start(ctx, request)
        name = arn.rsplit(":", 1)[1]
        for _ in range(1200):  # bounded: the gate is reached in seconds
            if sandbox.pending(arn):
                break
            time.sleep(0.05)
        assert [entry["sourceServerId"] for entry in sandbox.pending(arn)] == [FIRST_SERVER]

        # WHEN the operator rejects it, by execution name
        code = commands.reject(ctx, name, "application owner not available", approver="alice")

        # THEN the server was answered, and the wave rolls it back
        assert code == commands.EXIT_OK and f"Rejected by alice: {FIRST_SERVER}" in out.getvalue()
        described = sandbox.wait(arn)
        line = json.loads(described["cause"])["servers"][0]
        assert (line["outcome"], line["failedStep"]) == ("ROLLED_BACK", "Wait For Approval")
        # ... and approving afterwards answers nobody: the execution ended (exit 1)
        assert commands.approve(ctx, name, approver="bob") == commands.EXIT_FAILED


def test_preflight_fails_the_server_whose_target_role_cannot_be_assumed(tmp_path):
    # GIVEN a world whose first target account's role trusts another account
    world = ROOT / "sandbox" / "worlds" / "role-trusts-someone-else.json"

    # WHEN the wave's preflight runs in the sandbox
    out = io.StringIO()
    code = cli.main(["--sandbox", "preflight", str(TWO_SERVERS), "--world", str(world), "--json"], out=out)

    # THEN it exits 1; that server failed the role check, the other passed every check
    found = json.loads(out.getvalue())
    by_server = {server["sourceServerId"]: server for server in found["servers"]}
    assert code == commands.EXIT_FAILED and found["passed"] is False
    failed = {check["check"] for check in by_server[FIRST_SERVER]["checks"] if check["result"] == "fail"}
    assert "target-role-assumable" in failed and by_server[FIRST_SERVER]["passed"] is False
    assert by_server[SECOND_SERVER]["passed"] is True
