"""Fixtures of the sandbox tests: a fresh moto mock per test, a World in it, and clients as the pipeline has them."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import boto3
import pytest
from moto import mock_aws
from sandbox_helpers import SANDBOX_MOCK, TARGET

from sandbox import aws_rules, mgn
from sandbox.world import FAST_MOTO_ENVIRONMENT, World


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    for name, value in FAST_MOTO_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config=SANDBOX_MOCK):
        # moto starts every mock without a default session, so each test would parse every service model
        # again (most of a test's time); one session for all sandbox tests keeps the run fast.
        boto3.DEFAULT_SESSION = _shared_session()
        yield


@cache
def _shared_session() -> boto3.Session:
    return boto3.Session(region_name="us-east-1")


@pytest.fixture
def world(aws) -> Iterator[World]:
    """A world with no servers yet and target account TARGET built with no placements."""
    with World() as built:
        built.add_target_account(TARGET)
        yield built


@pytest.fixture(autouse=True)
def _sandbox_off_after_test() -> Iterator[None]:
    """A failing test must not leave the rules or the simulator patched into moto for the next one."""
    yield
    mgn.uninstall()
    aws_rules.uninstall()
    aws_rules.reset_pacing()
    aws_rules.set_default_principal(None)
