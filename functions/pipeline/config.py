"""Settings each function reads from its environment, read when used rather than at import.

A missing setting is an error at the first use, never a silent fallback: a function deployed
without its table or key must fail loudly, not act on a default resource.
"""

import os


class MissingSetting(RuntimeError):
    """A function runs without an environment variable its template entry must give it."""


def setting(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise MissingSetting(f"environment variable {name} is not set")
    return value


def ledger_table() -> str:
    return setting("LEDGER_TABLE")


def approval_table() -> str:
    return setting("APPROVAL_TABLE")


def sharing_key_arn() -> str:
    return setting("SHARING_KEY_ARN")


def target_role_name() -> str:
    return setting("TARGET_ROLE_NAME")


def target_role_external_id() -> str:
    return setting("TARGET_ROLE_EXTERNAL_ID")


def notification_topic_arn() -> str:
    return setting("NOTIFICATION_TOPIC_ARN")


def target_account_allowlist() -> frozenset[str]:
    """The accounts images may be shared with: comma-separated account ids."""
    return frozenset(account.strip() for account in setting("TARGET_ACCOUNT_ALLOWLIST").split(",") if account.strip())


def default_agent_config_parameter() -> str | None:
    return os.environ.get("DEFAULT_AGENT_CONFIG_PARAMETER") or None


def default_instance_profile() -> str | None:
    """The restored instances' profile from the target-account stack, when a request names none."""
    return os.environ.get("DEFAULT_INSTANCE_PROFILE") or None
