"""The picture of the state machine in docs/ is made from the definition and kept in step with it."""

import json

from sandbox import diagram


def test_the_picture_matches_the_current_definition():
    # A failure here means the ASL changed: run `python -m sandbox diagram` and commit the result.
    assert diagram.is_current(), "docs/state-machine.md is stale: run python -m sandbox diagram"


def test_the_picture_has_every_state_and_every_transition():
    definition = json.loads(diagram.DEFINITION.read_text())
    picture = diagram.render(definition)
    server_states = definition["States"]["Cut Over Servers"]["ItemProcessor"]["States"]
    for name in [*definition["States"], *server_states]:
        assert f'"{name}"' in picture
    # Every way out of a state is drawn, the rollback catches included.
    assert "Launch_Restored_Instance -->|States.ALL| Cut_Over_Servers_Roll_Back" in picture
    assert "Cut_Over_Servers_Finalize_Cutover" in picture
