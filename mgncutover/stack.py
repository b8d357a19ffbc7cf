"""Where the pipeline is: the migration stack's outputs, read once, or given on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_STACK = "mgn-cutover"
# Stack output -> what the command line calls it.
OUTPUTS = {
    "CutoverStateMachineArn": "state_machine_arn",
    "LedgerTableName": "ledger_table",
    "SchedulerRoleArn": "scheduler_role_arn",
    "ApprovalTableName": "approval_table",
}


class StackOutputMissing(LookupError):
    """The stack has no output for a setting a command needs, and no flag gave it."""


@dataclass
class Stack:
    """The settings of one deployed pipeline; each is read from the stack on first use."""

    session: Any
    name: str = DEFAULT_STACK
    given: dict[str, str] = field(default_factory=dict)
    _outputs: dict[str, str] | None = field(default=None, init=False)

    def get(self, setting: str) -> str:
        if self.given.get(setting):
            return self.given[setting]
        if self._outputs is None:
            self._outputs = self._read_outputs()
        value = self._outputs.get(setting)
        if not value:
            output = next(key for key, name in OUTPUTS.items() if name == setting)
            flag = "--" + setting.replace("_", "-")
            raise StackOutputMissing(f"stack {self.name} has no output {output}; give it with {flag}")
        return value

    @property
    def state_machine_arn(self) -> str:
        return self.get("state_machine_arn")

    @property
    def ledger_table(self) -> str:
        return self.get("ledger_table")

    @property
    def scheduler_role_arn(self) -> str:
        return self.get("scheduler_role_arn")

    @property
    def approval_table(self) -> str:
        return self.get("approval_table")

    def rollback_function(self) -> str:
        """The stack's Roll Back function, which `cleanup` runs (a resource of the stack, not an output)."""
        if self.given.get("rollback_function"):
            return self.given["rollback_function"]
        resource = self.session.client("cloudformation").describe_stack_resource(
            StackName=self.name, LogicalResourceId="RollBackFunction")
        return resource["StackResourceDetail"]["PhysicalResourceId"]

    def execution_arn(self, execution: str) -> str:
        """An execution's ARN from its ARN or its name (an execution of the stack's state machine)."""
        if execution.startswith("arn:"):
            return execution
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + execution

    def _read_outputs(self) -> dict[str, str]:
        stacks = self.session.client("cloudformation").describe_stacks(StackName=self.name)["Stacks"]
        outputs = stacks[0].get("Outputs", []) if stacks else []
        return {OUTPUTS[o["OutputKey"]]: o["OutputValue"] for o in outputs if o["OutputKey"] in OUTPUTS}
