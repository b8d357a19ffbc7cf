"""`invoke FUNCTION --event FILE`: every function of template.yaml runs with its events/ file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sandbox import template
from sandbox.invoke import invoke_function
from tests.rehearsal.helpers import EVENTS, ROOT

FUNCTIONS = template.functions(template.load())
# events/functions/<handler module>.json feeds the function whose Handler is that module.
EVENT_OF = {logical_id: EVENTS / "functions" / f"{fn.handler.split('.')[1]}.json"
            for logical_id, fn in FUNCTIONS.items()}


def test_every_function_has_an_event_file_and_every_event_file_a_function():
    assert sorted(path.name for path in (EVENTS / "functions").glob("*.json")) == sorted(
        path.name for path in EVENT_OF.values())


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_runs_with_its_event_file(logical_id):
    # GIVEN the function's event file, as `sam local invoke` would be given it
    event = json.loads(EVENT_OF[logical_id].read_text())

    # WHEN the sandbox runs that function with it
    result = invoke_function(logical_id, event)

    # THEN it returns a result, not Lambda's error payload
    assert isinstance(result, dict)
    assert "errorType" not in result, result


def test_invoke_create_image_acts_on_the_cutover_instance_the_sandbox_launched():
    # GIVEN the Create Image event, naming a cutover instance of another run
    event = json.loads(EVENT_OF["CreateImageFunction"].read_text())

    # WHEN it is invoked
    result = invoke_function("CreateImageFunction", event)

    # THEN it started an image of this sandbox's cutover instance
    assert result["imageId"].startswith("ami-")
    assert result["ready"] is False


def test_invoke_roll_back_removes_what_the_steps_before_it_created():
    # GIVEN the Roll Back event: a server that failed verification of its restored instance
    event = json.loads(EVENT_OF["RollBackFunction"].read_text())

    # WHEN it is invoked
    result = invoke_function("RollBackFunction", event)

    # THEN it removed the restored instance, the images of both accounts (the target's copy still
    # running, as restoring from the shared image leaves it at that point) and the sharing,
    # terminated the cutover instance and readied the server again
    assert result["complete"] is True
    removed = " ".join(result["removed"])
    for artifact in ("restored instance", "launch permission", "create-volume permission", "cutover instance",
                     "grant", "lifecycle CUTTING_OVER -> READY_FOR_CUTOVER"):
        assert artifact in removed


def test_command_line_invoke_prints_the_result_and_exits_zero():
    done = subprocess.run([sys.executable, "-m", "sandbox", "invoke", "ClaimServerFunction", "--event",
                           str(EVENT_OF["ClaimServerFunction"])], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"claimed": True, "artifacts": {}}


def test_command_line_invoke_of_an_unknown_function_names_the_ones_there_are():
    done = subprocess.run([sys.executable, "-m", "sandbox", "invoke", "NoSuchFunction", "--event",
                           str(EVENT_OF["ClaimServerFunction"])], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "NoSuchFunction" in done.stderr and "CreateImageFunction" in done.stderr
