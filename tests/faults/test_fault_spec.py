"""The fault spec language and the errors each kind answers with, as the SDK sees them."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from sandbox.faults import Fault, FaultSpecError
from sandbox.runner import Sandbox, SandboxError
from tests.faults.helpers import one_server_request


@pytest.mark.parametrize(("text", "expected"), [
    ("ec2:CreateImage:throttle", Fault("throttle", 1, 1, "ec2:CreateImage")),
    ("ec2:CreateImage:5xx:1-5", Fault("5xx", 1, 5, "ec2:CreateImage")),
    ("kms:CreateGrant:timeout:2+", Fault("timeout", 2, None, "kms:CreateGrant")),
    ("Check Image/ec2:DescribeImages:denied", Fault("denied", 1, 1, "ec2:DescribeImages", "Check Image")),
    ("CreateImageFunction:crash-after:3", Fault("crash-after", 3, 3, None, "CreateImageFunction")),
])
def test_a_fault_spec_reads_as_written(text, expected):
    # GIVEN / WHEN a fault written on the command line
    fault = Fault.parse(text)

    # THEN it names the operation, kind and calls, and prints back in full
    assert fault == expected
    assert Fault.parse(str(fault)) == fault


@pytest.mark.parametrize("text", ["ec2:CreateImage", "ec2:CreateImage:melt", "s3:PutObject:throttle",
                                  "ec2:CreateImage:throttle:0", "ec2:CreateImage:throttle:5-2"])
def test_a_fault_spec_that_cannot_be_injected_is_refused(text):
    # GIVEN / WHEN / THEN a spec with an unknown kind, service or call range is an error naming it
    with pytest.raises(FaultSpecError, match="ec2:CreateImage|s3"):
        Fault.parse(text)


def test_a_fault_scoped_to_an_unknown_state_is_refused():
    # GIVEN / WHEN / THEN a scope that is neither a function nor a Task state is refused before anything runs
    with pytest.raises(SandboxError, match="Chek Image"):
        Sandbox(one_server_request(), faults=["Chek Image/ec2:DescribeImages:denied"])


def test_a_throttle_answers_with_the_services_own_code_and_status_and_the_sdk_retries_it():
    # GIVEN two throttled DescribeImages calls, made by a handler (only the pipeline's calls are faulted)
    specs = ["ec2:DescribeImages:throttle:1-2", "mgn:DescribeJobs:throttle:1-6"]
    with Sandbox(one_server_request(), faults=specs) as sandbox:
        from pipeline import aws

        with sandbox.faults.handler("CheckImageFunction", "Check Image"):
            # WHEN the pipeline's client calls it
            images = aws.client("ec2").describe_images(Owners=["self"])["Images"]
            # ... and a call that stays throttled through every SDK attempt
            with pytest.raises(ClientError) as caught:
                aws.client("mgn").describe_jobs(filters={})

    # THEN the SDK absorbed the first two (its third attempt answered); past its 5 retries the throttle surfaced
    # with MGN's real code and status
    assert images == []
    assert sandbox.faults.injected == {"ec2:DescribeImages:throttle:1-2": 2, "mgn:DescribeJobs:throttle:1-6": 6}
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
