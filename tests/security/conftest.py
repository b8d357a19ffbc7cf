"""The security tests share one run of the IAM scenarios: it is the slowest thing they do."""

from __future__ import annotations

import io

import pytest

from sandbox import iam


@pytest.fixture(scope="session")
def scenarios() -> tuple[iam.Report, str]:
    """The report of the IAM scenarios, and every line the handlers logged while they ran."""
    logs = io.StringIO()
    return iam.rehearse_scenarios(log_stream=logs), logs.getvalue()
