"""`--sandbox`: the commands against a fresh in-process sandbox instead of an AWS account.

The sandbox lives only as long as the process, so the commands that make sense alone are
`start` (followed to its end) and `preflight`; the others are shown inside one `Sandbox` by
tests that call the command functions.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import IO, Any, Iterator

import boto3

from mgncutover.commands import Context
from mgncutover.stack import Stack

# Polls of a sandbox execution: it runs in-process and fast; seconds apart would hide its steps.
POLL_SECONDS = 0.1


@contextmanager
def opened(request: Any, world: dict | None, out: IO[str], json_output: bool) -> Iterator[tuple[Any, Context]]:
    """A sandbox deployed for `request`, and a command context whose session reaches it."""
    from sandbox.runner import REGION, Sandbox

    with Sandbox(request, world) as sandbox:
        yield sandbox, context_for(sandbox, out, json_output, REGION)


def context_for(sandbox: Any, out: IO[str], json_output: bool = False, region: str = "us-east-1") -> Context:
    """The command context of a running sandbox: its stand-in stack's settings, the default session."""
    given = {"state_machine_arn": sandbox.state_machine_arn, "ledger_table": sandbox.table,
             "rollback_function": sandbox.function_arn("RollBackFunction")}
    for setting, attribute in (("approval_table", "approval_table"), ("scheduler_role_arn", "scheduler_role_arn")):
        if getattr(sandbox, attribute, None):
            given[setting] = getattr(sandbox, attribute)
    session = boto3.Session(region_name=region)
    from sandbox import clock

    return Context(session, Stack(session, given=given), out=out, json=json_output, clock=lambda: clock.active().now())
