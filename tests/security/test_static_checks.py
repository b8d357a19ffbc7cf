"""The scanner's accepted findings: each one skipped in place, on its resource, with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cfn_yaml import load

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = [ROOT / "template.yaml", ROOT / "templates" / "target-account.yaml"]


def skips(path: Path) -> list[tuple[str, dict]]:
    resources = load(path)["Resources"]
    return [(name, skip) for name, resource in resources.items()
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_accepted_scanner_finding_names_its_check_and_its_reason(path):
    for name, skip in skips(path):
        assert set(skip) == {"id", "comment"}, name
        assert skip["id"].startswith("CKV_"), name
        assert len(skip["comment"]) >= 30, (name, skip)


def test_no_iam_or_key_policy_finding_is_accepted():
    # Findings on who may do what are fixed, never skipped: only the ones about run-time settings
    # (DLQ, VPC, reserved concurrency, encryption by a service's own key) are accepted.
    accepted = {skip["id"] for path in TEMPLATES for _, skip in skips(path)}
    assert accepted <= {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173", "CKV_AWS_158", "CKV_AWS_119",
                        "CKV_AWS_27"}


def test_ci_runs_the_scanner_on_both_templates():
    script = (ROOT / "scripts" / "test").read_text()
    assert ".venv-scan/bin/checkov" in script
    assert "-f template.yaml -f templates/target-account.yaml" in script
    assert "checkov==" in (ROOT / "requirements-scan.txt").read_text()
