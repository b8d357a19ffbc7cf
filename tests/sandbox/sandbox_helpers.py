"""Helpers the sandbox tests share: clients as the pipeline has them, and a bounded poll on simulated time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from sandbox import clock
from sandbox.world import DEFAULT_EXTERNAL_ID, DEFAULT_TARGET_ROLE_NAME

SANDBOX_MOCK = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
MIGRATION = "123456789012"
TARGET = "222222222222"
OTHER_TARGET = "333333333333"


def pipeline_client(service: str, account_id: str, role_name: str = DEFAULT_TARGET_ROLE_NAME,
                    external_id: str = DEFAULT_EXTERNAL_ID) -> Any:
    """A client in a target account reached the way the pipeline reaches it: its role, with the external id."""
    credentials = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{role_name}", RoleSessionName="mgn-cutover", ExternalId=external_id
    )["Credentials"]
    return boto3.client(
        service,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


# Simulated seconds between two calls of `poll`: longer than any default duration of a small world but MGN's launch.
POLL_SECONDS = 300


def poll(call: Callable[[], Any], done: Callable[[Any], bool], attempts: int = 5,
         every: float = POLL_SECONDS) -> tuple[Any, int]:
    """Call until `done` holds, at most `attempts` times, `every` simulated seconds apart (the world's clock
    moves at once: no real time passes); returns the last answer and the calls it took."""
    for attempt in range(1, attempts + 1):
        answer = call()
        if done(answer):
            return answer, attempt
        clock.active().sleep(every)
    raise AssertionError(f"not done after {attempts} calls; last answer: {answer}")
