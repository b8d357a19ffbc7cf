"""docs/watch.md is a whole recording of `watch` on the five-server wave: every server from its first
step to its outcome, the final table and a full bar (its timings are not compared)."""

from __future__ import annotations

import json
import re

from mgncutover import progress, transcript
from tests.cli.helpers import ROOT

LINE = re.compile(r"^\[ *(\d+h)?(\d+m)?\d+s\] (?P<who>\S+) +(?P<rest>.*)$")


def _recording() -> list[str]:
    text = transcript.DOCUMENT.read_text()
    block = text.split("```\n", 2)[1]
    return block.splitlines()


def test_the_recording_is_the_documented_command_from_start_to_end():
    lines = _recording()
    assert lines[0] == "$ ./scripts/cutover " + " ".join(transcript.COMMAND)
    assert lines[1].startswith("arn:aws:states:") and ":execution:mgn-cutover-cutover:wave-2-" in lines[1]
    assert lines[-2:] == ["$ echo $?", "0"]


def test_every_server_goes_from_its_first_step_to_its_outcome():
    servers = [s["sourceServerId"] for s in json.loads((ROOT / "events" / "five-server-wave.json").read_text())[
        "servers"]]
    changes = [LINE.match(line) for line in _recording() if line.startswith("[") and not line.startswith("[#")]
    assert all(changes), [line for line in _recording() if line.startswith("[") and not LINE.match(line)]
    assert {match["who"] for match in changes} == {"wave", *servers}
    for server in servers:
        said = [match["rest"] for match in changes if match["who"] == server]
        assert said[0] == progress.PENDING and said[-1].startswith("Release Server") and said[-1].endswith(
            "CUT_OVER"), said
    assert [m["rest"] for m in changes if m["who"] == "wave"][-1].endswith("SUCCEEDED")


def test_the_final_table_has_a_row_per_server_and_a_full_bar():
    lines = _recording()
    table = lines[lines.index("") + 1:-2]
    assert table[0].startswith("Execution wave-2-") and ": SUCCEEDED" in table[0]
    rows = table[2:-1]
    assert len(rows) == 5 and all(row.startswith("s-") and row.endswith("CUT_OVER") for row in rows)
    steps = 5 * len(progress.STEPS)
    assert table[-1] == f"[{'#' * 30}] 5/5 servers done, {steps}/{steps} steps"
