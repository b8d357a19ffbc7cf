"""Clients and assumed-role sessions: the right account, the configured role and external id, renewal."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from pipeline import aws, config
from pipeline.config import MissingSetting
from tests.unit.support import MIGRATION_ACCOUNT, TARGET_ACCOUNT, TARGET_ROLE_NAME


def test_clients_act_in_the_migration_account(moto_world):
    # GIVEN the functions' own credentials / WHEN a client is built / THEN it acts in the migration account
    assert aws.client("sts").get_caller_identity()["Account"] == MIGRATION_ACCOUNT


def test_target_clients_act_in_the_target_account_through_its_role(target_network):
    # GIVEN the target account's stack defines the role, trusting the pipeline with an external id
    # WHEN a target client is built
    identity = aws.target_client("sts", TARGET_ACCOUNT).get_caller_identity()

    # THEN it acts in the target account, as the assumed target role
    assert identity["Account"] == TARGET_ACCOUNT
    assert f":assumed-role/{TARGET_ROLE_NAME}/mgn-cutover" in identity["Arn"]


def test_a_wrong_external_id_is_refused_by_the_target_role(target_network, monkeypatch):
    # GIVEN the function's external id does not match the one the target role trusts
    monkeypatch.setenv("TARGET_ROLE_EXTERNAL_ID", "not-the-agreed-id")

    # WHEN / THEN STS refuses the role
    with pytest.raises(ClientError) as refused:
        aws.target_client("ec2", TARGET_ACCOUNT)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_target_sessions_are_reused_then_renewed(target_network, monkeypatch):
    # GIVEN a target client built at some moment
    clock = {"now": 1000.0}
    monkeypatch.setattr(aws.time, "monotonic", lambda: clock["now"])
    first = aws.target_client("ec2", TARGET_ACCOUNT)

    # WHEN it is asked for again soon, and again 45 minutes later
    soon = aws.target_client("ec2", TARGET_ACCOUNT)
    clock["now"] += 2700
    later = aws.target_client("ec2", TARGET_ACCOUNT)

    # THEN the same client serves until the credentials near their end, then a new session takes over
    assert soon is first
    assert later is not first
    assert later.describe_vpcs()["Vpcs"]


def test_target_role_arn_names_the_configured_role(settings):
    # GIVEN the configured role name / WHEN the ARN is built / THEN it names that role in the target
    assert aws.target_role_arn(TARGET_ACCOUNT) == f"arn:aws:iam::{TARGET_ACCOUNT}:role/{TARGET_ROLE_NAME}"


@pytest.mark.parametrize(
    "read, variable",
    [
        (config.ledger_table, "LEDGER_TABLE"),
        (config.sharing_key_arn, "SHARING_KEY_ARN"),
        (config.target_role_name, "TARGET_ROLE_NAME"),
        (config.target_role_external_id, "TARGET_ROLE_EXTERNAL_ID"),
        (config.notification_topic_arn, "NOTIFICATION_TOPIC_ARN"),
        (config.target_account_allowlist, "TARGET_ACCOUNT_ALLOWLIST"),
    ],
)
def test_a_missing_or_empty_setting_fails_loudly(read, variable, monkeypatch):
    # GIVEN an empty setting / WHEN it is read / THEN MissingSetting names it
    monkeypatch.setenv(variable, "")
    with pytest.raises(MissingSetting, match=variable):
        read()


def test_the_agent_parameter_default_is_optional(monkeypatch):
    # GIVEN no default parameter (unset or empty) / WHEN it is read / THEN there is none
    monkeypatch.delenv("DEFAULT_AGENT_CONFIG_PARAMETER", raising=False)
    assert config.default_agent_config_parameter() is None
    monkeypatch.setenv("DEFAULT_AGENT_CONFIG_PARAMETER", "")
    assert config.default_agent_config_parameter() is None


def test_an_allowlist_of_only_separators_allows_nobody(monkeypatch):
    # GIVEN an allowlist of commas and spaces / WHEN read / THEN no account is allowed
    monkeypatch.setenv("TARGET_ACCOUNT_ALLOWLIST", " , ,")
    assert config.target_account_allowlist() == frozenset()
