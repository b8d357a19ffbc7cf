"""Runs the real state machine and the real handlers against the simulated accounts.

`Sandbox` opens a moto world, stands in for the migration stack (ledger table, topic,
sharing key, state machine built from `statemachine/cutover.asl.json` with the template's
substitutions) and answers every Lambda invocation of the state machine by calling, in this
process, the handler `template.yaml` names for that function with that function's
environment.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
import warnings
import contextlib
import datetime
import functools
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import boto3
import botocore.handlers
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.core.botocore_stubber import MockRawResponse

from sandbox import aws_rules, clock, events, map_runs
from sandbox import faults as fault_injection
from sandbox import iam, report
from sandbox import template as cfn
from sandbox.world import FAST_MOTO_ENVIRONMENT, MIGRATION_ACCOUNT, World

REGION = "us-east-1"
STACK = "mgn-cutover"
TARGET_ROLE_NAME = "MgnCutoverTargetRole"
EXTERNAL_ID = "sandbox-external-id-0000"
STATE_MACHINE_DEFINITION = cfn.ROOT / "statemachine" / "cutover.asl.json"
# A rehearsal that has not finished in this long (real seconds) is stuck, not slow.
EXECUTION_TIMEOUT_SECONDS = 900
# How often `wait` looks at a running execution: a tenth of the time gone so far, within these bounds.
WAIT_LOOK_MIN_SECONDS, WAIT_LOOK_MAX_SECONDS = 0.05, 2.0

# The handlers import their shared package the way they do on Lambda, from the code root.
if str(cfn.ROOT / "functions") not in sys.path:
    sys.path.insert(0, str(cfn.ROOT / "functions"))

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}

Progress = Callable[[dict], None]


class SandboxError(RuntimeError):
    """The sandbox itself could not do what was asked (not a failure of the pipeline)."""


@dataclass
class Rehearsal:
    """What one execution left: its status and output, and every account's inventory."""

    execution: str
    status: str
    output: Any
    error: str | None
    cause: Any
    inventory: dict
    notifications: list[dict] = field(default_factory=list)
    faults: dict = field(default_factory=dict)
    # Simulated time (sandbox/report.py `timing`): the wave's, and per server its cutover, end-to-end
    # time, critical path and the pipeline's overhead.
    timing: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"execution": self.execution, "status": self.status, "output": self.output, "error": self.error,
                "cause": self.cause, "inventory": self.inventory, "notifications": self.notifications,
                "faults": self.faults, "timing": self.timing}


@dataclass
class _Invocation:
    function: cfn.Function
    label: str


class Sandbox:
    """A simulated migration account and target accounts, with the pipeline deployed."""

    def __init__(self, request: dict, world_spec: dict | None = None, progress: Progress | None = None,
                 log_stream: IO[str] | None = None, faults: list[str] | None = None, enforce_iam: bool = True,
                 stack_parameters: dict[str, str] | None = None):
        self.request = request
        # Parameters of the stand-in stack that differ from the template's defaults (EnableMgnLaunchEvents).
        self.stack_parameters = dict(stack_parameters or {})
        # Every AWS call a handler makes is checked against its function's policy in template.yaml
        # (sandbox/iam.py); a call the policy does not allow fails as AWS would fail it.
        self.enforce_iam = enforce_iam
        self.iam: iam.Guard | None = None
        # Every invocation, in order: (function logical id, the Task state that made it).
        self.invocations: list[tuple[str, str]] = []
        # Every invocation on the simulated clock, for the report's timing; functions warm for a server.
        self.steps: list[clock.Operation] = []
        self._warm: set[tuple[str, str | None]] = set()
        self._timing_from: dict[str, tuple[int, int]] = {}
        # The handlers' structured logs; by default kept off stdout, which belongs to the report.
        self.log_stream = log_stream
        self.world_spec = world_spec or {}
        # Faults come from the command line and from the world file's "faults" list.
        try:
            self.faults = fault_injection.FaultPlan.parse(list(self.world_spec.get("faults", [])) + list(faults or []))
        except fault_injection.FaultSpecError as err:
            raise SandboxError(str(err)) from None
        self.progress = progress
        self.template = cfn.load()
        self.functions = cfn.functions(self.template)
        self._mock = mock_aws(config=MOTO_CONFIG)
        self._lock = threading.Lock()
        self._state_names = _state_names(json.loads(STATE_MACHINE_DEFINITION.read_text()))
        self._check_fault_targets()
        self.world: World | None = None
        # Set to ("approve", approver, None) or ("reject", approver, reason), `wait` answers the approval gate.
        self.gate_answer: tuple[str, str, str | None] | None = None

    def _check_fault_targets(self) -> None:
        known = set(self.functions) | {name for states in self._state_names.values() for _, name in states}
        for fault in self.faults.faults:
            if fault.target is not None and fault.target not in known:
                raise SandboxError(f"fault {fault}: {fault.target!r} is neither a function of template.yaml"
                                   " nor a Task state of the state machine")

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self._saved_env = dict(os.environ)
        # Read by moto when the mock starts: no public AMI catalogue in every simulated account.
        os.environ.update(FAST_MOTO_ENVIRONMENT)
        self._mock.start()
        os.environ.update({"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "sandbox",
                           "AWS_SECRET_ACCESS_KEY": "sandbox", "POWERTOOLS_TRACE_DISABLED": "true"})
        # What every function has (Globals), set before any handler module is imported: the
        # Powertools utilities read their service name and namespace when they are created.
        os.environ.update(self._global_environment())
        os.environ.pop("AWS_PROFILE", None)
        # Most steps publish no custom metric, which Powertools warns about on every call.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        # moto's interpreter logs every failed state at ERROR; the report already says what failed.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        self._redirect_logs()
        self._install_dispatcher()
        self._install_iam_guard()
        self._instant_waits = _patch_interpreter()
        self._instant_waits.__enter__()
        # Each server's iteration of the Distributed Map becomes a child execution, as on AWS.
        self._map_runs = map_runs.installed()
        self.child_executions = self._map_runs.__enter__()
        self._faults_installed = self.faults.installed()
        self._faults_installed.__enter__()
        _reset_pipeline_clients()
        world_spec = {key: value for key, value in self.world_spec.items() if key != "faults"}
        try:
            # The sharing key comes first: a world's server may replicate under it already.
            self.sharing_key_arn = self._create_sharing_key()
            self.world = World.for_request(world_request(self.request, self.world_spec),
                                           world_spec, target_role_name=TARGET_ROLE_NAME,
                                           external_id=EXTERNAL_ID, pipeline_stack=STACK,
                                           sharing_key_arn=self.sharing_key_arn)
            self._deploy_stack()
            self._arm_iam_guard()
            # The handlers' deadlines and poll intervals read the world's simulated time.
            from pipeline import clock as pipeline_clock

            self._real_time = pipeline_clock.use(self.world.clock.now)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self.world is not None:
            self.world.close()
        if getattr(self, "_real_time", None) is not None:
            from pipeline import clock as pipeline_clock

            pipeline_clock.use(self._real_time)
            self._real_time = None
        self._instant_waits.__exit__(*exc_info)
        self._map_runs.__exit__(*exc_info)
        self._faults_installed.__exit__(*exc_info)
        self._uninstall_dispatcher()
        if self.iam is not None:
            self.iam.uninstall()
        _reset_pipeline_clients()
        self._mock.stop()
        os.environ.clear()
        os.environ.update(self._saved_env)
        if self._devnull:
            from pipeline import observability

            observability.logger.registered_handler.setStream(sys.stdout)
            self._devnull.close()

    def _redirect_logs(self) -> None:
        from pipeline import observability

        self._devnull = None if self.log_stream else _Discarded()
        observability.logger.registered_handler.setStream(self.log_stream or self._devnull)

    def _global_environment(self) -> dict[str, str]:
        variables = self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        return {name: str(value) for name, value in variables.items() if isinstance(value, (str, int))}

    # -- the stand-in stack ------------------------------------------------------------------

    def role_arn(self, logical_id: str) -> str:
        # Under the stack's RolePath, as template.yaml puts them: the target role trusts that path.
        return f"arn:aws:iam::{MIGRATION_ACCOUNT}:role/mgn-cutover/{STACK}/{STACK}-{logical_id}Role"

    def function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{REGION}:{MIGRATION_ACCOUNT}:function:{STACK}-{logical_id}"

    def _deploy_stack(self) -> None:
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.table = f"{STACK}-ledger"
        dynamodb.create_table(TableName=self.table, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "sourceServerId", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "sourceServerId", "AttributeType": "S"}])
        self.approval_table = f"{STACK}-approval"
        dynamodb.create_table(TableName=self.approval_table, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "execution", "KeyType": "HASH"},
                                         {"AttributeName": "sourceServerId", "KeyType": "RANGE"}],
                              AttributeDefinitions=[{"AttributeName": "execution", "AttributeType": "S"},
                                                    {"AttributeName": "sourceServerId", "AttributeType": "S"}])
        self.topic_arn = boto3.client("sns", region_name=REGION).create_topic(Name=f"{STACK}-notifications")["TopicArn"]
        self._subscribe_inbox()
        self.resolver = cfn.Resolver(self.template, self._parameters(), self._refs(), self._arns())
        self.environments = {fn: self._environment(fn) for fn in self.functions}
        self._put_sharing_key_policy()
        self.state_machine_arn = self._create_state_machine()

    def _parameters(self) -> dict:
        return {"TargetAccountIds": ",".join(self.world.target_accounts), "TargetRoleName": TARGET_ROLE_NAME,
                "TargetRoleExternalId": EXTERNAL_ID, "DefaultAgentConfigParameter": "AmazonCloudWatch-linux",
                **self.stack_parameters}

    def _refs(self) -> dict:
        return {"AWS::Region": REGION, "AWS::AccountId": MIGRATION_ACCOUNT, "AWS::StackName": STACK,
                "LedgerTable": self.table, "NotificationTopic": self.topic_arn, "SharingKey": self.sharing_key_id,
                "ApprovalTable": self.approval_table}

    def _arns(self) -> dict:
        arns = {"SharingKey": self.sharing_key_arn, "NotificationTopic": self.topic_arn,
                "LedgerTable": f"arn:aws:dynamodb:{REGION}:{MIGRATION_ACCOUNT}:table/{self.table}",
                "ApprovalTable": f"arn:aws:dynamodb:{REGION}:{MIGRATION_ACCOUNT}:table/{self.approval_table}"}
        for logical_id in self.functions:
            arns[logical_id] = self.function_arn(logical_id)
            arns[f"{logical_id}Role"] = self.role_arn(logical_id)
        return arns

    def _create_sharing_key(self) -> str:
        kms = boto3.client("kms", region_name=REGION)
        key = kms.create_key(Description="Sandbox stand-in for the migration stack's sharing key",
                             KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
        kms.create_alias(AliasName=f"alias/{STACK}-sharing", TargetKeyId=key["KeyId"])
        self.sharing_key_id = key["KeyId"]
        return key["Arn"]

    def _put_sharing_key_policy(self) -> None:
        """The sharing key's policy as template.yaml writes it, unless the world leaves the targets out."""
        policy = self.resolver.resolve(self.template["Resources"]["SharingKey"]["Properties"]["KeyPolicy"])
        if self.world.spec.sharing_key_policy == "withoutTargets":
            home = f"arn:aws:iam::{MIGRATION_ACCOUNT}:root"
            policy["Statement"] = [s for s in policy["Statement"] if s.get("Principal", {}).get("AWS") == home]
        spec = self.world.spec
        left_out = {a for a in self.world.target_accounts if not spec.target_account(a).in_sharing_key_policy}
        for statement in policy["Statement"] if left_out else []:
            principals = statement.get("Principal", {}).get("AWS")
            if isinstance(principals, list):
                statement["Principal"]["AWS"] = [p for p in principals if p not in left_out]
        boto3.client("kms", region_name=REGION).put_key_policy(KeyId=self.sharing_key_arn, PolicyName="default",
                                                               Policy=json.dumps(policy))

    def _environment(self, logical_id: str) -> dict[str, str]:
        resolved = self.resolver.resolve(self.functions[logical_id].environment)
        return {name: value if isinstance(value, str) else json.dumps(value) for name, value in resolved.items()}

    def _create_state_machine(self) -> str:
        substitutions = self.resolver.resolve(cfn.state_machine(self.template).get("DefinitionSubstitutions", {}))
        definition = STATE_MACHINE_DEFINITION.read_text()
        for name, value in substitutions.items():
            definition = definition.replace("${" + name + "}", str(value))
        sfn = boto3.client("stepfunctions", region_name=REGION)
        return sfn.create_state_machine(name=f"{STACK}-cutover", definition=definition,
                                        roleArn=f"arn:aws:iam::{MIGRATION_ACCOUNT}:role/{STACK}-state-machine")[
            "stateMachineArn"]

    def _subscribe_inbox(self) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        self.inbox_url = sqs.create_queue(QueueName=f"{STACK}-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=self.inbox_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"]
        boto3.client("sns", region_name=REGION).subscribe(TopicArn=self.topic_arn, Protocol="sqs",
                                                          Endpoint=inbox_arn,
                                                          Attributes={"RawMessageDelivery": "false"})

    def notifications(self) -> list[dict]:
        sqs = boto3.client("sqs", region_name=REGION)
        messages = sqs.receive_message(QueueUrl=self.inbox_url, MaxNumberOfMessages=10).get("Messages", [])
        found = []
        for message in messages:
            body = json.loads(message["Body"])
            found.append({"subject": body.get("Subject"), "message": body.get("Message"),
                          "attributes": {k: v.get("Value") for k, v in body.get("MessageAttributes", {}).items()}})
            sqs.delete_message(QueueUrl=self.inbox_url, ReceiptHandle=message["ReceiptHandle"])
        return found

    # -- running -----------------------------------------------------------------------------

    def start(self, request: Any, name: str | None = None) -> str:
        """Start an execution (as the console or CLI would) and return its ARN."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        name = name or f"rehearsal-{uuid.uuid4().hex[:12]}"
        # Where this execution's invocations and operations begin, for its report's timing.
        self._timing_from[name] = (len(self.steps), len(self.world.clock.operations))
        return sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(request))[
            "executionArn"]

    def wait(self, execution_arn: str, timeout: float = EXECUTION_TIMEOUT_SECONDS) -> dict:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        started = time.monotonic()
        deadline = started + timeout
        answered = False
        while time.monotonic() < deadline:
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            if self.gate_answer and not answered:
                answered = self._answer_gate(execution_arn)
            # A DescribeExecution serializes the whole wave's input, and the interpreter waits on the GIL
            # meanwhile: looking again after a tenth of the time gone keeps the looks few in a long wave and
            # keeps a short one at most a tenth longer.
            time.sleep(min(WAIT_LOOK_MAX_SECONDS, max(WAIT_LOOK_MIN_SECONDS, (time.monotonic() - started) / 10)))
        raise SandboxError(f"execution {execution_arn} still running after {timeout:.0f} s")

    # -- the approval gate -------------------------------------------------------------------

    def pending(self, execution_arn: str) -> list[dict]:
        """The servers of the execution waiting at the approval gate, as `approval.pending` lists them."""
        from pipeline import approval

        return approval.pending(_execution_name(execution_arn), boto3.Session(region_name=REGION),
                                self.approval_table)

    def approve(self, execution_arn: str, approver: str) -> list[str]:
        """Approve the execution's waiting servers, as `./scripts/cutover approve` does."""
        from pipeline import approval

        return approval.approve(_execution_name(execution_arn), approver, boto3.Session(region_name=REGION),
                                self.approval_table)

    def reject(self, execution_arn: str, approver: str, reason: str) -> list[str]:
        """Reject the execution's waiting servers, as `./scripts/cutover reject` does."""
        from pipeline import approval

        return approval.reject(_execution_name(execution_arn), approver, reason, boto3.Session(region_name=REGION),
                               self.approval_table)

    def _answer_gate(self, execution_arn: str) -> bool:
        # `gate_answer` = ("approve", approver, None) or ("reject", approver, reason): given as soon as the
        # wave's approval notification is out, as an operator reading it would.
        from pipeline import approval

        if not approval.notified(_execution_name(execution_arn), boto3.Session(region_name=REGION),
                                 self.approval_table):
            return False
        verb, approver, reason = self.gate_answer
        if verb == "approve":
            self.approve(execution_arn, approver)
        else:
            self.reject(execution_arn, approver, reason)
        return True

    def rehearse(self, request: Any | None = None, name: str | None = None,
                 timeout: float = EXECUTION_TIMEOUT_SECONDS) -> Rehearsal:
        """Run one execution to its end and return what it left in every account (a wave of hundreds of
        servers takes longer than the default `timeout`, in real seconds)."""
        return self._rehearsal(self.start(self.request if request is None else request, name), timeout)

    def _rehearsal(self, arn: str, timeout: float = EXECUTION_TIMEOUT_SECONDS) -> Rehearsal:
        described = self.wait(arn, timeout)
        return Rehearsal(
            execution=described["name"] if "name" in described else arn.rsplit(":", 1)[1],
            status=described["status"],
            output=_json_or_none(described.get("output")),
            error=described.get("error"),
            cause=_json_or_text(described.get("cause")),
            inventory=self.world.inventory(),
            notifications=self.notifications(),
            faults=self.faults.report(),
            timing=self._timing(arn),
        )

    def _timing(self, execution_arn: str) -> dict:
        steps_from, operations_from = self._timing_from.get(execution_arn.rsplit(":", 1)[1], (0, 0))
        simulated = self.world.clock
        return report.timing(simulated.start, self.steps[steps_from:], simulated.operations[operations_from:])

    def put_event(self, event: dict) -> list[tuple[str, str]]:
        """Put an event on the sandbox's bus: each enabled rule of template.yaml it matches starts the state
        machine with the event as input, as EventBridge does. Returns (rule, execution ARN) pairs."""
        rules = events.matching_rules(events.rules_from_template(self.template, self._parameters()), event)
        return [(rule.name, self.start(event, name=f"{rule.name[:40]}-{uuid.uuid4().hex[:12]}")) for rule in rules]

    def rehearse_event(self, event: dict) -> list[tuple[str, Rehearsal]]:
        """Put the event on the bus and run every execution it started to its end; [] if it started none."""
        return [(rule, self._rehearsal(arn)) for rule, arn in self.put_event(event)]

    def invoke(self, function: str, event: Any) -> Any:
        """Run one function, as `sam local invoke FUNCTION -e EVENT` would, against this world."""
        logical_id = self.logical_id(function)
        result = self._call(logical_id, event)
        if result["error"]:
            raise result["exception"]
        return result["value"]

    def logical_id(self, function: str) -> str:
        if function in self.functions:
            return function
        for logical_id in self.functions:
            if function in (self.function_arn(logical_id), f"{STACK}-{logical_id}"):
                return logical_id
        raise SandboxError(f"template.yaml has no function {function!r}; it has: {', '.join(sorted(self.functions))}")

    # -- least privilege ---------------------------------------------------------------------

    def _install_iam_guard(self) -> None:
        # Installed with the dispatcher, before any session exists: a session reads its
        # handlers when it is created. Its policies come once the stand-in stack resolves them.
        self.iam = iam.Guard({}, MIGRATION_ACCOUNT, REGION, self.role_arn, self._target_role_policy,
                             enforce=self.enforce_iam)
        self.iam.install()

    def _arm_iam_guard(self) -> None:
        # The stand-in stack has no notification key (moto's SNS encrypts nothing); its policies
        # name one all the same.
        arns = {**self._arns(), "NotificationKey": f"arn:aws:kms:{REGION}:{MIGRATION_ACCOUNT}:key/notification-key"}
        resolver = cfn.Resolver(self.template, self._parameters(), self._refs(), arns)
        self.iam.policies = iam.function_policies(self.template, resolver)

    def _target_role_policy(self, account_id: str) -> iam.Policy:
        parameters = {"PipelineAccountId": MIGRATION_ACCOUNT, "PipelineStackName": STACK, "ExternalId": EXTERNAL_ID,
                      "RoleName": TARGET_ROLE_NAME, "SharingKeyArn": self.sharing_key_arn}
        profile = self.resolver.parameters.get("RestoredInstanceProfileName") or "MgnCutoverRestoredInstance"
        return iam.target_role_policy(account_id, parameters, iam.profile_role_arn(account_id, profile))

    # -- the Lambda stand-in -----------------------------------------------------------------

    def _install_dispatcher(self) -> None:
        self._dispatch_entry = ("before-send.lambda.Invoke", self._on_invoke)
        botocore.handlers.BUILTIN_HANDLERS.append(self._dispatch_entry)
        # The callback tasks' answers (the approval gate's): as Step Functions takes them.
        self._task_tokens = _task_tokens_answered_as_aws_answers_them()
        self._task_tokens.__enter__()

    def _uninstall_dispatcher(self) -> None:
        if self._dispatch_entry in botocore.handlers.BUILTIN_HANDLERS:
            botocore.handlers.BUILTIN_HANDLERS.remove(self._dispatch_entry)
        self._task_tokens.__exit__(None, None, None)

    def _on_invoke(self, request, **_: Any) -> AWSResponse:
        # The URL is .../functions/<name or ARN>/invocations
        name = request.url.split("/functions/", 1)[1].split("/invocations", 1)[0]
        from urllib.parse import unquote

        logical_id = self.logical_id(unquote(name))
        event = json.loads(request.body or b"{}")
        result = self._call(logical_id, event)
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        if result["error"]:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return AWSResponse(request.url, 200, headers, MockRawResponse(json.dumps(result["payload"])))

    def _call(self, logical_id: str, event: Any) -> dict:
        function = self.functions[logical_id]
        module_name, handler_name = function.handler.rsplit(".", 1)
        server, started = _server_of(event), clock.active().now()
        # One handler at a time: each runs with its own function's environment, and the
        # environment of a process is shared by its threads.
        with self._lock, _environment(self.environments[logical_id]):
            handler = getattr(importlib.import_module(module_name), handler_name)
            state_name = self.state_name(logical_id, event)
            self.invocations.append((logical_id, state_name))
            acting = iam.current_function.set(logical_id)
            for_server = clock.current_server.set(server)
            try:
                # Each function acts as its own role: the target role's trust policy sees which.
                # Powertools prints its metrics (EMF) to stdout, which belongs to the report here.
                with self.faults.handler(logical_id, state_name), aws_rules.acting_as(self.role_arn(logical_id)), \
                        contextlib.redirect_stdout(self.log_stream or self._devnull):
                    value = handler(event, _Context(self.function_arn(logical_id)))
                outcome = {"error": False, "value": value, "payload": value}
                if self.faults.crash_after(logical_id, state_name):
                    # The work is done and recorded; only the answer is lost, as when the
                    # function times out on its way out.
                    outcome = {"error": True, "exception": _Crashed(), "payload": {
                        "errorType": fault_injection.CRASH_ERROR, "errorMessage": _Crashed.MESSAGE, "stackTrace": []}}
            except Exception as err:  # noqa: BLE001 - reported to the state machine as Lambda does
                outcome = {"error": True, "exception": err, "payload": {
                    "errorType": type(err).__name__, "errorMessage": str(err),
                    "stackTrace": traceback.format_tb(err.__traceback__)}}
            finally:
                iam.current_function.reset(acting)
                clock.current_server.reset(for_server)
            self._report(logical_id, event, outcome)
        # The invocation's duration passes after the handler, outside the lock: a sleeper holding the lock
        # would stop every other iteration, and so the clock.
        seconds = self._invocation_seconds(logical_id, server)
        clock.active().sleep(seconds)
        self.steps.append(clock.Operation(server, state_name, started, started + seconds))
        return outcome

    def _invocation_seconds(self, logical_id: str, server: str | None) -> float:
        speed = self.world.spec.speed
        # NOTE: a cold start comes with a function's first call for each server, not with each new execution
        # environment Lambda would start: which of two calls at the same moment found a warm one would
        # depend on thread timing, and a rehearsal must be the same every run.
        cold = (logical_id, server) not in self._warm
        self._warm.add((logical_id, server))
        return speed["invocationSeconds"] + (speed["coldStartSeconds"] if cold else 0.0)

    def _report(self, logical_id: str, event: Any, outcome: dict) -> None:
        if self.progress is None:
            return
        self.progress({"server": _server_of(event), "step": self.state_name(logical_id, event),
                       "error": outcome["payload"] if outcome["error"] else None,
                       "result": None if outcome["error"] else outcome["value"]})

    def state_name(self, logical_id: str, event: Any) -> str:
        """The ASL state that invoked `logical_id` with `event` (told apart by constant parameters)."""
        candidates = self._state_names.get(logical_id, [])
        for constants, name in candidates:
            if isinstance(event, dict) and all(event.get(key) == value for key, value in constants.items()):
                return name
        return candidates[0][1] if candidates else logical_id


def _server_of(event: Any) -> str | None:
    """The source server a Lambda event is for (None for the wave's own steps)."""
    state = event.get("state", event) if isinstance(event, dict) else {}
    server = state.get("server") if isinstance(state, dict) else None
    return server.get("sourceServerId") if isinstance(server, dict) else None


def world_request(request: Any, world_spec: dict) -> Any:
    """The request whose world an execution input needs.

    MGN's launch result event names only the source server: its placement is in the server's
    tags, which the world file gives, and its cutover job was launched before the event. A
    request naming an MGN wave or application names no server at all: the world holds every
    server of the world file, each target account built where the server's tags place it.
    """
    selection = _mgn_selection(request)
    if selection is not None:
        return _world_of_tagged_servers(selection, world_spec)
    if not (isinstance(request, dict) and request.get("source") == "aws.mgn"):
        return request
    from pipeline import entry

    server_id = str((request.get("resources") or [""])[0]).rsplit("/", 1)[-1]
    tags = world_spec.get("servers", {}).get(server_id, {}).get("tags", {})
    try:
        placement = entry.placement_from_tags(server_id, {"tags": tags})
    except Exception as err:
        raise SandboxError(f"the world file must give source server {server_id} its placement tags: {err}") from None
    job_id = (request.get("detail") or {}).get("job-id")
    return {"servers": [{"sourceServerId": server_id, "target": placement, "launchJobId": job_id}]}


def _mgn_selection(request: Any) -> dict | None:
    """The request (console input or a Cutover Requested event's detail) if it names an MGN wave or application."""
    body = request.get("detail") if isinstance(request, dict) and "detail-type" in request else request
    if isinstance(body, dict) and ("mgnWave" in body or "mgnApplication" in body):
        return body
    return None


def _world_of_tagged_servers(selection: dict, world_spec: dict) -> dict:
    from pipeline import entry

    spec_servers = world_spec.get("servers") or {}
    applications = ((world_spec.get("mgn") or {}).get("applications") or {}).values()
    listed = [server for a in applications if isinstance(a, dict) for server in a.get("servers") or []]
    server_ids = dict.fromkeys([*spec_servers, *listed])
    if not server_ids:
        raise SandboxError("a request naming an MGN wave or application needs a world file that gives its servers")
    defaults = selection.get("targetDefaults") if isinstance(selection.get("targetDefaults"), dict) else {}
    servers = []
    for server_id in server_ids:
        # Leniently: a missing or malformed tag is for Normalize Request to refuse, not for the world.
        tags = (spec_servers.get(server_id) or {}).get("tags") or {}
        tagged = entry.placement_from_tags(server_id, {"tags": tags}, required=()) if tags else {}
        placement = {**defaults, **tagged}
        placed = placement.get("accountId") and placement.get("subnetId")
        servers.append({"sourceServerId": server_id, **({"target": placement} if placed else {})})
    return {"servers": servers, "options": selection.get("options") or {}}


class _Discarded(io.TextIOBase):
    """Where the handlers' logs and metrics go when nobody reads them: written nowhere, with no system call for
    each line (the null device costs one per log line)."""

    def write(self, text: str) -> int:
        return len(text)


class _Crashed(Exception):
    """An invocation the sandbox made fail after its handler returned."""

    MESSAGE = "Task timed out after 60.00 seconds (a crash-after fault of the sandbox)"

    def __str__(self) -> str:
        return self.MESSAGE


class _Context:
    """The parts of the Lambda context object that Powertools reads."""

    def __init__(self, function_arn: str):
        self.function_name = function_arn.rsplit(":", 1)[1]
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "sandbox"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _SimulatedTime:
    """Stands in for the `time` module of moto's retrier: a retry interval is a sleep on the simulated clock."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        clock.active().sleep(seconds)


class _OnBehalfThread(threading.Thread):
    """A thread moto's interpreter starts and waits for (a program, a Task): it sleeps on the simulated clock
    as part of the iteration of the thread that started it.

    NOTE: the branches of a Parallel state inside an iteration would count as one participant; the state
    machine has none, so they are left as moto runs them.
    """

    def __init__(self, *args: Any, target: Callable | None = None, **kwargs: Any):
        in_iteration = clock.active().in_iteration()

        def run_on_behalf(*call_args: Any, **call_kwargs: Any) -> None:
            with clock.active().on_behalf(in_iteration):
                target(*call_args, **call_kwargs)

        super().__init__(*args, target=run_on_behalf if target else None, **kwargs)


class _ThreadingOnBehalf:
    """The `threading` module, as moto's program module sees it: its threads act for their iteration."""

    Thread = _OnBehalfThread

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


class _KeepsNoThreads(list):
    """Stands in for moto's `TMP_THREADS`, the list its interpreter appends every thread it starts to.

    moto never reads that list again, but holding a finished thread that nobody joined keeps its stack
    mapped on Python 3.13 (the runtime of the functions, and the sandbox's): a wave of a few hundred servers
    starts tens of thousands of threads and runs out of memory mappings before it ends.
    """

    def append(self, thread: Any) -> None:
        pass


class _MidpointJitter:
    """Stands in for the `random` module of moto's jitter, so a rehearsal with retries is the same every run.

    NOTE: FULL jitter waits half the interval every time; AWS draws it at random, so retries of several
    servers that collide at one moment spread out on AWS and stay together here.
    """

    @staticmethod
    def uniform(low: float, high: float) -> float:
        return (low + high) / 2


def _modules_keeping_threads() -> dict[Any, list]:
    """Each module of moto's interpreter that appends its threads to `TMP_THREADS`, with the list it holds."""
    names = ("program.program", "state.exec.execute_state", "state.exec.state_map.iteration.inline_iteration_component",
             "state.exec.state_task.service.state_task_service_callback", "state.exec.state_parallel.branch_worker")
    modules = [importlib.import_module(f"moto.stepfunctions.parser.asl.component.{name}") for name in names]
    modules.append(importlib.import_module("moto.stepfunctions.parser.backend.execution_worker"))
    return {module: module.TMP_THREADS for module in modules}


@contextmanager
def _patch_interpreter() -> Iterator[None]:
    """Wait states and retry intervals sleep on the simulated clock (sandbox/clock.py), each map iteration is
    counted live on it while it runs, and the interpreter reuses one Lambda client instead of building a new
    one (a quarter second) per task, parses each JSONPath once, and lets go of the threads it has started."""
    from moto.stepfunctions.parser.asl.component.common.retry import jitter_strategy_decl, retrier_decl
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as distributed,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        inline_iteration_component as inline,
    )
    from moto.stepfunctions.parser.asl.component.program import program
    from moto.stepfunctions.parser.asl.component.state.exec import execute_state
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    original_wait = wait_function.WaitFunction._wait_interval
    original_stamp = EventManager.__dict__["_get_current_timestamp"]
    original_threads = (execute_state.Thread, program.threading)
    original_time = retrier_decl.time
    original_random = jitter_strategy_decl.random
    original_launch = inline.InlineIterationComponent._launch_worker
    original_bodies = (inline.InlineIterationComponent._eval_body, distributed.DistributedIterationComponent._eval_body)
    original_client = lambda_eval_utils.boto_client_for
    clients: dict[tuple[str, str], Any] = {}
    client_lock = threading.Lock()
    thread_lists = _modules_keeping_threads()
    parsers = {module: module.parse for module in (json_path, result_path)}

    def cached_client(region: str, service: str, state_credentials: Any = None) -> Any:
        # The interpreter ignores task credentials anyway; one client per service is the same.
        with client_lock:
            if (region, service) not in clients:
                clients[(region, service)] = original_client(region=region, service=service)
            return clients[(region, service)]

    def launch_counted(self, env: Any, eval_input: Any, job_pool: Any) -> Any:
        # moto's launcher, with the iteration counted live before its thread starts: a sibling that
        # sleeps at once cannot move the clock past an iteration that has not begun yet.
        worker = self._create_worker(env=env, eval_input=eval_input, job_pool=job_pool)
        run, simulated = worker.eval, clock.active()

        def counted() -> None:
            with simulated.iteration():
                run()

        simulated.iteration_started()
        threading.Thread(target=counted, daemon=True).start()
        return worker

    def not_live_while(original: Callable) -> Callable:
        # A map inside an iteration: the iteration waits for its children and must not hold the clock.
        def eval_body(self, env: Any) -> None:
            with clock.active().not_live():
                original(self, env)

        return eval_body

    wait_function.WaitFunction._wait_interval = lambda self, env, wait_seconds: clock.active().sleep(wait_seconds)
    # The interpreter runs a program, and each Task of it, in threads of their own: they act for the iteration.
    execute_state.Thread, program.threading = _OnBehalfThread, _ThreadingOnBehalf()
    retrier_decl.time = _SimulatedTime()
    jitter_strategy_decl.random = _MidpointJitter()
    inline.InlineIterationComponent._launch_worker = launch_counted
    inline.InlineIterationComponent._eval_body = not_live_while(original_bodies[0])
    distributed.DistributedIterationComponent._eval_body = not_live_while(original_bodies[1])
    lambda_eval_utils.boto_client_for = cached_client
    for module in thread_lists:
        module.TMP_THREADS = _KeepsNoThreads()
    # The interpreter builds a JSONPath parser and parses the path again at every read of the state; a
    # parsed path is never changed, so each is parsed once.
    for module, parse in parsers.items():
        module.parse = functools.lru_cache(maxsize=None)(parse)
    # History events carry simulated time, so what `watch` shows of a rehearsal is what AWS would show.
    EventManager._get_current_timestamp = staticmethod(
        lambda: datetime.datetime.fromtimestamp(clock.active().now(), tz=datetime.timezone.utc))
    try:
        yield
    finally:
        wait_function.WaitFunction._wait_interval = original_wait
        EventManager._get_current_timestamp = original_stamp
        execute_state.Thread, program.threading = original_threads
        retrier_decl.time = original_time
        jitter_strategy_decl.random = original_random
        inline.InlineIterationComponent._launch_worker = original_launch
        inline.InlineIterationComponent._eval_body, distributed.DistributedIterationComponent._eval_body = (
            original_bodies)
        lambda_eval_utils.boto_client_for = original_client
        for module, kept in thread_lists.items():
            module.TMP_THREADS = kept
        for module, parse in parsers.items():
            module.parse = parse


@contextmanager
def _task_tokens_answered_as_aws_answers_them() -> Iterator[None]:
    """SendTaskFailure keeps its cause, a task token is answered once (a second answer is TaskTimedOut), and a
    task waiting for its token does not hold the simulated clock.

    moto drops the cause of SendTaskFailure, so a rejection would lose who rejected and why; and it lets a
    token be answered again until the waiting task picks the answer up, the later answer winning. A branch
    waiting at the approval gate waits on the others (the last to arrive sends the notification), so it
    stops counting as a live iteration, as a nested map does.
    NOTE: the task's deadline (TimeoutSeconds) is real time in moto's interpreter, not simulated time.
    """
    from moto.core.responses import EmptyResult
    from moto.stepfunctions import responses
    from moto.stepfunctions.parser.api import TaskTimedOut
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback as callback,
    )

    originals = (responses.StepFunctionResponse.send_task_success, responses.StepFunctionResponse.send_task_failure)
    original_wait = callback.StateTaskServiceCallback._eval_wait_for_task_token
    answered: set[str] = set()
    lock = threading.Lock()

    def once(token: str, answer: Callable[[], Any]) -> Any:
        with lock:
            if token in answered:
                raise TaskTimedOut("Task Timed Out: 'Provided task does not exist anymore'")
            result = answer()
            answered.add(token)
            return result

    def send_task_success(self) -> Any:
        return once(self._get_param("taskToken"), lambda: originals[0](self))

    def send_task_failure(self) -> Any:
        token = self._get_param("taskToken")
        once(token, lambda: self.stepfunction_backend.send_task_failure(
            token, error=self._get_param("error"), cause=self._get_param("cause")))
        return EmptyResult()

    def wait_off_the_clock(self, *args: Any, **kwargs: Any) -> Any:
        # The gate is inside a map iteration: one live iteration fewer while it waits for its answer.
        simulated = clock.active()
        simulated.iteration_ended()
        try:
            return original_wait(self, *args, **kwargs)
        finally:
            simulated.iteration_started()

    responses.StepFunctionResponse.send_task_success = send_task_success
    responses.StepFunctionResponse.send_task_failure = send_task_failure
    callback.StateTaskServiceCallback._eval_wait_for_task_token = wait_off_the_clock
    try:
        yield
    finally:
        responses.StepFunctionResponse.send_task_success, responses.StepFunctionResponse.send_task_failure = originals
        callback.StateTaskServiceCallback._eval_wait_for_task_token = original_wait


def _reset_pipeline_clients() -> None:
    from pipeline import aws

    aws.reset()


def _state_names(definition: dict) -> dict[str, list[tuple[dict, str]]]:
    """For each function, the Task states that invoke it and the constant parameters of each."""
    found: dict[str, list[tuple[dict, str]]] = {}
    for name, state in _all_states(definition):
        resource = state.get("Resource", "")
        parameters = state.get("Parameters") or {}
        if resource.startswith("arn:aws:states:::lambda:invoke"):
            # The service integration form (a callback with a task token): the function is a parameter,
            # and the event the function gets is the Payload.
            resource, parameters = str(parameters.get("FunctionName", "")), parameters.get("Payload") or {}
        if state.get("Type") != "Task" or not resource.startswith("${"):
            continue
        logical_id = resource[2:-1].removesuffix("Arn")
        constants = {key: value for key, value in parameters.items() if not key.endswith(".$")}
        found.setdefault(logical_id, []).append((constants, name))
    # The most specific match first: a state with constants before one without, and among
    # equals the state named after the function ("Release Server" for ReleaseServerFunction).
    def rank(logical_id: str, item: tuple[dict, str]) -> tuple[int, bool]:
        words = re.sub(r"(?<!^)(?=[A-Z])", " ", logical_id.removesuffix("Function"))
        return -len(item[0]), item[1] != words

    return {key: sorted(value, key=lambda item, key_=key: rank(key_, item)) for key, value in found.items()}


def _all_states(graph: dict) -> Iterator[tuple[str, dict]]:
    for name, state in graph.get("States", {}).items():
        yield name, state
        for nested in [state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])]:
            if nested:
                yield from _all_states(nested)


def _execution_name(execution_arn: str) -> str:
    # The per-server state carries the wave's execution name; so does the approval table.
    return execution_arn.rsplit(":", 1)[1]


def _json_or_none(text: str | None) -> Any:
    return json.loads(text) if text else None


def _json_or_text(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
