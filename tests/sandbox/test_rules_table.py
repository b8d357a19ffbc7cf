"""The table of rules in docs/sandbox-rules.md names tests that exist, so it cannot drift from the tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_the_rules_table_names_exists():
    # GIVEN the tests the table names
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", (ROOT / "docs" / "sandbox-rules.md").read_text())
    assert len(named) >= 20

    # WHEN each file is read, THEN it defines the test
    for path, test in named:
        tree = ast.parse((ROOT / path).read_text())
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert test in defined, f"{path}::{test} is named in docs/sandbox-rules.md but does not exist"
