"""Shared fixtures: every test runs against moto with fake credentials, never a real account."""

import os

import pytest

# Set before boto3 is imported anywhere, so no test can reach a real account by accident.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "mgn-cross-account-cutover",
        "POWERTOOLS_METRICS_NAMESPACE": "MgnCutover",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(autouse=True)
def _fresh_clients():
    """Each test builds its own moto world; cached clients and sessions must not outlive it."""
    from pipeline import aws

    aws.reset()
    yield
    aws.reset()
