"""The EventBridge entry points, end to end through `rehearse --event`: the sandbox's bus matches the event
against the rules of template.yaml and starts the state machine, or starts nothing."""

from __future__ import annotations

import json
import subprocess
import sys

from sandbox import cli
from tests.rehearsal.helpers import EVENTS, ROOT

MGN_WORLD = str(ROOT / "sandbox" / "worlds" / "mgn-console-launch.json")


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox", "rehearse", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def rehearse_event(*arguments: str) -> tuple[int, dict]:
    done = run_cli(*arguments, "--json")
    # The JSON report is the last document on stdout (the functions' metrics may print before it).
    return done.returncode, json.loads(done.stdout[done.stdout.index('{\n  "matchedRules"'):])


def test_cutover_requested_event_rehearses_end_to_end():
    # WHEN the custom event is put on the sandbox's bus
    code, result = rehearse_event("--event", str(EVENTS / "cutover-requested.json"))

    # THEN its rule started one execution, which cut over both servers
    assert code == cli.EXIT_SUCCEEDED
    assert result["matchedRules"] == ["CutoverStateMachineCutoverRequested"]
    (execution,) = result["executions"]
    assert execution["status"] == "SUCCEEDED"
    lifecycles = {s["id"]: s["lifeCycle"] for s in execution["inventory"]["mgn"]["sourceServers"]}
    assert set(lifecycles.values()) == {"CUTOVER"}


def test_mgn_launch_result_rehearses_end_to_end_once_the_rule_is_enabled():
    # WHEN MGN's launch result event is put on the bus of a stack with EnableMgnLaunchEvents=true
    code, result = rehearse_event("--event", str(EVENTS / "mgn-launch-result.json"), "--world", MGN_WORLD,
                                  "--enable-mgn-launch-events")

    # THEN the MGN rule started the pipeline, which cut the console-launched server over
    assert code == cli.EXIT_SUCCEEDED
    assert result["matchedRules"] == ["CutoverStateMachineMgnCutoverLaunched"]
    assert result["executions"][0]["status"] == "SUCCEEDED"


def test_mgn_launch_result_starts_nothing_while_the_rule_is_disabled():
    # WHEN the same event reaches a stack with the template's default (the rule DISABLED)
    code, result = rehearse_event("--event", str(EVENTS / "mgn-launch-result.json"), "--world", MGN_WORLD)

    # THEN nothing started
    assert (code, result) == (cli.EXIT_SUCCEEDED, {"matchedRules": [], "executions": []})


def test_a_test_launch_result_starts_nothing_and_says_so(tmp_path):
    # GIVEN MGN's event for a test launch, not a cutover
    event = json.loads((EVENTS / "mgn-launch-result.json").read_text())
    event["detail"]["state"] = "TEST_LAUNCH_SUCCEEDED"
    path = tmp_path / "test-launch.json"
    path.write_text(json.dumps(event))

    # WHEN it is put on the bus with the MGN rule enabled
    done = run_cli("--event", str(path), "--world", MGN_WORLD, "--enable-mgn-launch-events")

    # THEN no rule matches, no execution started, and the command says so
    assert done.returncode == cli.EXIT_SUCCEEDED, done.stderr
    assert "it started no execution" in done.stdout
