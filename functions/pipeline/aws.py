"""The one place that builds boto3 clients: in the migration account, or in a target account
through the pipeline's role there.

Clients and assumed-role sessions are cached for the life of a warm Lambda environment;
`reset()` drops them (the sandbox and the tests call it when they build a new world).
"""

from __future__ import annotations

import functools
import os
import time

import boto3
import botocore.session
from botocore.config import Config

from pipeline import config

# Standard retry mode backs off on throttling and 5xx with jitter; what outlives it surfaces
# as TransientAwsError and is retried again by the state machine.
_SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="mgn-cross-account-cutover")

# Assumed-role credentials last an hour; a cached session is renewed well before that so a
# step never starts with credentials about to expire.
_SESSION_SECONDS = 3600
_RENEW_AFTER_SECONDS = 2700

_target_sessions: dict[str, tuple[float, boto3.Session]] = {}
_target_clients: dict[tuple[str, str, int], object] = {}


@functools.cache
def client(service: str):
    """A client in the migration account, where the functions run."""
    return boto3.client(service, config=_SDK_CONFIG)


def target_client(service: str, account_id: str, session_name: str = "mgn-cutover"):
    """A client in `account_id`, through the target role the account's stack defines."""
    session = _target_session(account_id, session_name)
    key = (account_id, service, id(session))
    if key not in _target_clients:
        _target_clients[key] = session.client(service, config=_SDK_CONFIG)
    return _target_clients[key]


def target_role_arn(account_id: str) -> str:
    return f"arn:{partition()}:iam::{account_id}:role/{config.target_role_name()}"


def region() -> str:
    # Lambda sets AWS_REGION; building a session just to read it costs tens of milliseconds.
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or boto3.session.Session().region_name


@functools.cache
def partition() -> str:
    return boto3.session.Session().get_partition_for_region(region())


def _target_session(account_id: str, session_name: str) -> boto3.Session:
    cached = _target_sessions.get(account_id)
    if cached and time.monotonic() - cached[0] < _RENEW_AFTER_SECONDS:
        return cached[1]

    credentials = client("sts").assume_role(
        RoleArn=target_role_arn(account_id),
        RoleSessionName=session_name[:64],
        ExternalId=config.target_role_external_id(),
        DurationSeconds=_SESSION_SECONDS,
    )["Credentials"]
    core = botocore.session.Session()
    # A new session would read every service model from disk again; the models are the same
    # for every account, so all sessions share the loader (and its cache) of the first one.
    core.register_component("data_loader", _shared_loader())
    core.set_credentials(credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"])
    session = boto3.Session(botocore_session=core, region_name=region())
    _target_sessions[account_id] = (time.monotonic(), session)
    return session


@functools.cache
def _shared_loader():
    return boto3.Session()._session.get_component("data_loader")


def reset() -> None:
    client.cache_clear()
    partition.cache_clear()
    _shared_loader.cache_clear()
    _target_sessions.clear()
    _target_clients.clear()
