"""Deterministic names and tokens: what EC2, KMS and SSM accept, the same for the same inputs."""

from __future__ import annotations

import re

from pipeline import names

SERVER = "s-1a2b3c4d5e6f70001"
INSTANCE = "i-0123456789abcdef0"
AMI_NAME = re.compile(r"^[A-Za-z0-9 ()\[\]./\-'@_]{3,128}$")


def test_image_names_are_valid_ami_names_and_differ_by_stage():
    # GIVEN the three stages / WHEN named / THEN EC2 accepts each name, and they differ
    stages = [names.CUTOVER_IMAGE, names.SHARING_COPY, names.TARGET_COPY]
    image_names = [names.image_name(SERVER, INSTANCE, stage) for stage in stages]
    assert all(AMI_NAME.match(name) for name in image_names)
    assert len(set(image_names)) == 3


def test_client_token_is_stable_short_and_input_sensitive():
    # GIVEN the same and other inputs / WHEN tokens are made / THEN only the inputs change them
    token = names.client_token("ami-1", "arn:aws:kms:us-east-1:123456789012:key/k")
    assert token == names.client_token("ami-1", "arn:aws:kms:us-east-1:123456789012:key/k")
    assert token != names.client_token("ami-2", "arn:aws:kms:us-east-1:123456789012:key/k")
    assert len(token) <= 64 and token.isascii()


def test_grant_name_is_one_kms_accepts():
    # GIVEN a server and an account / WHEN the grant is named / THEN KMS accepts the name
    assert re.fullmatch(r"[a-zA-Z0-9:/_-]{1,256}", names.grant_name(SERVER, "222222222222"))


def test_tags_mark_the_resource_and_bound_the_execution():
    # GIVEN a long execution name / WHEN tags are made / THEN they mark the resource, bounded
    tags = {tag["Key"]: tag["Value"] for tag in names.tags(SERVER, "x" * 300, names.SHARING_COPY, {"Name": "web-01"})}
    assert tags == {
        names.MANAGED_TAG: "true",
        names.SERVER_TAG: SERVER,
        names.EXECUTION_TAG: "x" * 256,
        names.STAGE_TAG: names.SHARING_COPY,
        "Name": "web-01",
    }
