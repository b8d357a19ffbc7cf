"""Nothing goes where it must not: no share outside the allowlist, and no credential in logs, output or mail."""

from __future__ import annotations

import copy
import json

import pytest

from pipeline.errors import TargetNotAllowed
from sandbox.runner import Sandbox
from tests.rehearsal.helpers import EVENTS, MIGRATION_ACCOUNT, load_event

OUTSIDER = "444444444444"


def shared_anything(inventory: dict) -> list:
    migration = inventory["accounts"][MIGRATION_ACCOUNT]
    return migration["kmsGrants"] + [image for image in migration["images"] if image.get("launchPermissions")]


def test_a_rehearsal_naming_an_account_outside_the_allowlist_shares_nothing():
    # GIVEN the console wave, its second server sent to an account outside the allowlist
    request = load_event("console-wave.json")
    stray = copy.deepcopy(request)
    stray["servers"][1]["target"]["accountId"] = OUTSIDER

    # WHEN it is rehearsed
    with Sandbox(request) as sandbox:
        before = sandbox.world.inventory()
        rehearsal = sandbox.rehearse(stray)
        ran = [function for function, _ in sandbox.invocations]

    # THEN it stopped at validation, naming the account; no grant, no permission, nothing changed
    assert (rehearsal.status, rehearsal.error) == ("FAILED", "TargetNotAllowed")
    assert OUTSIDER in rehearsal.cause["errorMessage"]
    assert ran == ["NormalizeRequestFunction"]
    assert shared_anything(rehearsal.inventory) == []
    assert rehearsal.inventory == before


def test_the_share_function_invoked_directly_refuses_an_account_outside_the_allowlist():
    # GIVEN the share step's own event, its target account changed to one outside the allowlist
    state = json.loads((EVENTS / "functions" / "share_image.json").read_text())
    state["server"]["target"]["accountId"] = OUTSIDER

    with Sandbox(load_event("console-wave.json")) as sandbox:
        before = sandbox.world.inventory()
        calls = len(sandbox.iam.decisions)

        # WHEN the Share function is invoked with it, as sam local invoke would
        with pytest.raises(TargetNotAllowed) as refused:
            sandbox.invoke("ShareImageFunction", state)

        # THEN it refuses before any AWS call: no grant, no permission, nothing changed
        assert refused.value.account_id == OUTSIDER
        assert sandbox.iam.decisions[calls:] == []
        assert sandbox.world.inventory() == before


def test_no_credential_appears_in_logs_execution_output_history_or_notifications(scenarios):
    # GIVEN the IAM scenarios (a wave, an MGN event, two rollbacks), with the handlers' logs kept
    report, logs = scenarios
    secrets = report.issued_secrets

    # THEN the functions did assume roles (so there is something to leak), and none of it leaked
    assert len(secrets) >= 9
    assert len(logs) > 10_000
    shown = {"logs": logs, "output, history and notifications": "\n".join(report.shown)}
    leaked = {where: [secret[:6] for secret in secrets if secret in text] for where, text in shown.items()}
    assert leaked == {where: [] for where in shown}
    # ... nor anything shaped like a session key or named like a credential
    for text in shown.values():
        assert "ASIA" not in text and "SessionToken" not in text and "SecretAccessKey" not in text
