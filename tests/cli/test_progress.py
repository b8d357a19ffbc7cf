"""The progress model, fed recorded history events: rows per server, steps, outcomes, elapsed times."""

from __future__ import annotations

import io
import json
import re

from mgncutover import progress, render
from mgncutover.progress import STEPS, wave_progress
from mgncutover.watch import JSON, PLAIN, TTY, Watch, follow
from tests.cli.helpers import ROOT, RecordedStepFunctions, load_recording



def _children(recording: dict) -> list[list[dict]]:
    return [child["events"] for child in recording["children"]]


def _by_server(wave) -> dict:
    return {row.server: row for row in wave.rows}


def _until(events: list[dict], state: str) -> list[dict]:
    """The events of a child up to (and with) its first entering `state`: the history while it is there."""
    cut = next(i for i, e in enumerate(events) if (e.get("stateEnteredEventDetails") or {}).get("name") == state)
    return events[:cut + 1]


def test_a_finished_wave_has_one_row_per_server_each_with_its_outcome():
    # GIVEN the histories of a wave in which one server's target copy was refused
    recording = load_recording()

    # WHEN the progress model reads them
    wave = wave_progress("wave-1-recorded", recording["parent"]["events"], _children(recording))

    # THEN the wave failed, both servers have a row, in the request's order, and each says how it ended
    assert wave.status == "FAILED" and wave.finished
    assert [row.server for row in wave.rows] == ["s-1a2b3c4d5e6f70001", "s-1a2b3c4d5e6f70002"]
    outcomes = sorted(row.outcome for row in wave.rows)
    assert outcomes == ["CUT_OVER", "ROLLED_BACK"]
    rolled_back = next(row for row in wave.rows if row.outcome == "ROLLED_BACK")
    assert rolled_back.detail == "at Copy Image To Target: UnauthorizedOperation"
    # ... and every step of every server is done, so the bar is full
    assert wave.servers_done == 2 and wave.steps_done == wave.steps_total == 2 * len(STEPS)


def test_a_server_in_the_middle_shows_its_step_and_the_time_spent_in_it():
    # GIVEN one child's history cut where it entered Check Image for the first time
    recording = load_recording()
    events = next(c for c in _children(recording) if progress.server_of(c) == "s-1a2b3c4d5e6f70002")
    partial = _until(events, "Check Image")
    entered = progress._seconds(partial[-1]["timestamp"])

    # WHEN the model reads it, ten seconds after that moment
    row = progress.server_row("s-1a2b3c4d5e6f70002", partial)

    # THEN the server is in Create Image (its check belongs to it), running, with the step's time counted
    # from when Create Image began, and the steps before it done
    assert row.step == "Create Image" and row.outcome is None and not row.done
    assert row.steps_done == progress.STEP_NAMES.index("Create Image")
    create_began = progress._seconds(next(e for e in partial if (e.get("stateEnteredEventDetails") or {}).get(
        "name") == "Create Image")["timestamp"])
    assert row.elapsed_in_step(entered + 10) == (entered + 10) - create_began
    assert row.elapsed(entered + 10) >= row.elapsed_in_step(entered + 10)


def test_without_readable_children_the_rows_come_from_the_wave_itself():
    # GIVEN only the parent's history (the children are not readable, or not started yet)
    recording = load_recording()
    parent = recording["parent"]["events"]
    before_map = [e for e in parent if e["id"] <= next(e["id"] for e in parent if e["type"] == "MapRunStarted")]

    # WHEN the model reads the parent while its map runs, and once it ended
    running = wave_progress("w", before_map, [])
    ended = wave_progress("w", parent, [])

    # THEN the servers are listed from Normalize Request's output, waiting; then with their outcomes
    assert [row.step for row in running.rows] == [progress.PENDING, progress.PENDING]
    assert running.status == "RUNNING" and running.step == "Cut Over Servers"
    assert sorted(row.outcome for row in ended.rows) == ["CUT_OVER", "ROLLED_BACK"]


def test_a_redriven_server_is_shown_by_its_latest_child():
    # GIVEN a server with two children: a first one that ended failed, and a later one now at Create Image
    recording = load_recording()
    events = next(c for c in _children(recording) if progress.server_of(c) == "s-1a2b3c4d5e6f70001")
    first = _until(events, "Start Cutover") + [{"id": 10_000, "type": "ExecutionFailed",
                                                "timestamp": events[5]["timestamp"],
                                                "executionFailedEventDetails": {"error": "States.Timeout"}}]
    later = [dict(e, timestamp=progress._seconds(e["timestamp"]) + 3600) for e in _until(events, "Create Image")]

    # WHEN the model reads both
    wave = wave_progress("w", recording["parent"]["events"][:9], [first, later])

    # THEN the row is the later child's: running, at Create Image
    row = _by_server(wave)["s-1a2b3c4d5e6f70001"]
    assert row.step == "Create Image" and row.outcome is None


def test_a_failed_child_without_a_report_line_says_how_its_execution_ended():
    # GIVEN a child execution that failed before any report line (a state machine error)
    events = [
        {"id": 1, "type": "ExecutionStarted", "timestamp": 100.0,
         "executionStartedEventDetails": {"input": json.dumps({"server": {"sourceServerId": "s-0000000000000000a"}})}},
        {"id": 2, "type": "TaskStateEntered", "timestamp": 101.0, "stateEnteredEventDetails": {"name": "Claim Server"}},
        {"id": 3, "type": "ExecutionFailed", "timestamp": 105.0,
         "executionFailedEventDetails": {"error": "States.Runtime", "cause": "bad path"}},
    ]

    # WHEN the model reads it
    row = progress.server_row("s-0000000000000000a", events)

    # THEN the row ends FAILED with the error, and its time stops when the execution ended
    assert (row.outcome, row.detail, row.ended) == ("FAILED", "States.Runtime", 105.0)
    assert row.elapsed(now=1_000.0) == 5.0


def test_a_state_the_model_does_not_know_is_shown_by_its_name_and_moves_nothing_forward():
    events = [
        {"id": 1, "type": "ExecutionStarted", "timestamp": 1.0,
         "executionStartedEventDetails": {"input": json.dumps({"server": {"sourceServerId": "s-0000000000000000b"}})}},
        {"id": 2, "type": "TaskStateEntered", "timestamp": 2.0, "stateEnteredEventDetails": {"name": "Create Image"}},
        {"id": 3, "type": "TaskStateEntered", "timestamp": 3.0,
         "stateEnteredEventDetails": {"name": "Some New Step"}},
    ]
    row = progress.server_row("s-0000000000000000b", events)
    assert row.step == "Some New Step" and row.steps_done == progress.STEP_NAMES.index("Create Image")


def test_every_state_a_server_passes_through_belongs_to_a_step():
    # A renamed or new state of the ASL would show by its bare name and count no progress.
    definition = json.loads((ROOT / "statemachine" / "cutover.asl.json").read_text())
    states = set(definition["States"]["Cut Over Servers"]["ItemProcessor"]["States"])
    assert states - set(progress.STEP_OF_STATE) - set(progress.ASIDE) == set()


# -- the watch on a recording ---------------------------------------------------------------------------------


def _watch_recording(mode: str) -> tuple[str, object]:
    recording = load_recording()
    sfn = RecordedStepFunctions(recording)
    stamps = sorted({progress._seconds(e["timestamp"]) for c in recording["children"] for e in c["events"]})
    moments = iter(stamps[::7] + [float("inf")])
    sfn.until = next(moments)
    out = io.StringIO()
    watcher = Watch(sfn, recording["parent"]["arn"], out=out, mode=mode, clock=lambda: sfn.until
                    if sfn.until != float("inf") else stamps[-1])

    def advance(_seconds: float) -> None:
        sfn.until = next(moments, float("inf"))

    wave = follow(watcher, interval=0, timeout=60, sleep=advance)
    return out.getvalue(), wave


def _change(line: str) -> tuple[str, str, str]:
    """A change line: `[elapsed] server step  outcome detail`, in fixed columns."""
    body = line.split("] ", 1)[1]
    return body[:21].strip(), body[21:48].strip(), body[48:].strip().split("  ")[0]


def test_plain_watch_prints_a_line_per_change_then_the_final_table():
    # WHEN the recorded wave is watched as it progresses, without a terminal
    text, wave = _watch_recording(PLAIN)

    # THEN each server's steps appear in order, each row ends with its outcome, and the table closes it
    lines = text.splitlines()
    changes = [_change(line) for line in lines if line.startswith("[")]
    for server in ("s-1a2b3c4d5e6f70001", "s-1a2b3c4d5e6f70002"):
        steps = [step for who, step, _ in changes if who == server]
        assert steps[0] == progress.PENDING and steps[-1] == "Release Server"
        # In the order of the pipeline, each step once (Roll Back aside; a step's line comes again with the
        # outcome when it is the last).
        known = [progress.STEP_NAMES.index(step) for step in steps if step in progress.STEP_NAMES]
        known = [index for n, index in enumerate(known) if n == 0 or known[n - 1] != index]
        assert known == sorted(set(known))
        assert [rest for who, _, rest in changes if who == server][-1] in ("CUT_OVER", "ROLLED_BACK")
    # Every step a server went through is shown, even those begun and ended between two polls.
    cut_over = next(who for who, _, rest in changes if rest == "CUT_OVER")
    passed = {step for who, step, _ in changes if who == cut_over}
    assert set(progress.STEP_NAMES) - passed == {"Wait For Approval"}
    assert "Roll Back" in [step for _, step, _ in changes]
    assert lines[-1] == "[" + "#" * render.BAR_WIDTH + "] 2/2 servers done, 28/28 steps".replace(
        "28", str(2 * len(STEPS)))
    assert not any("\x1b[" in line for line in lines)
    assert wave.status == "FAILED"


def test_json_watch_prints_one_object_per_change_and_the_wave_last():
    text, _ = _watch_recording(JSON)
    objects = [json.loads(line) for line in text.splitlines()]
    assert {o["event"] for o in objects} == {"execution", "server", "wave"}
    assert objects[-1]["event"] == "wave" and objects[-1]["serversDone"] == 2
    servers = [o for o in objects if o["event"] == "server"]
    # One object per change: no two consecutive objects of a server say the same thing.
    for server in ("s-1a2b3c4d5e6f70001", "s-1a2b3c4d5e6f70002"):
        said = [(o["step"], o["outcome"]) for o in servers if o["server"] == server]
        assert all(a != b for a, b in zip(said, said[1:])) and said[-1][1] in ("CUT_OVER", "ROLLED_BACK")


def test_on_a_terminal_the_table_is_redrawn_in_place():
    text, wave = _watch_recording(TTY)
    drawings = re.split(r"\x1b\[(\d+)F\x1b\[J", text)
    # [drawing, lines up, drawing, lines up, ..., last drawing]
    assert len(drawings) >= 5
    for before, up in zip(drawings[0::2], drawings[1::2]):
        # Each redraw moves up over exactly the lines drawn before it, then clears them.
        assert int(up) == before.count("\n")
    assert drawings[-1].splitlines()[-1].startswith("[" + "#" * render.BAR_WIDTH + "] 2/2 servers done")
    assert wave.finished
