"""start, watch, schedule, status and cleanup against moto without its interpreter: fast, and an
execution stays RUNNING there, which is what the refusals and the `still running` exit need."""

from __future__ import annotations

import hashlib
import io
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from mgncutover import cli, commands
from mgncutover.stack import Stack, StackOutputMissing
from sandbox import map_runs
from tests.cli.helpers import ROOT

REQUEST_FILE = ROOT / "events" / "console-wave.json"
REGION = "us-east-1"
SCHEDULER_ROLE = "arn:aws:iam::123456789012:role/mgn-cutover-SchedulerRole"
DEFINITION = {"StartAt": "Hold", "States": {"Hold": {"Type": "Pass", "End": True}}}


@pytest.fixture
def stack():
    """A state machine and a ledger table in a moto account, and the flags that name them."""
    with mock_aws(), map_runs.installed():
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(name="mgn-cutover-cutover", definition=json.dumps(DEFINITION),
                                           roleArn="arn:aws:iam::123456789012:role/sm")["stateMachineArn"]
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName="mgn-cutover-ledger", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "sourceServerId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "sourceServerId", "AttributeType": "S"}])
        yield {"machine": machine, "flags": ["--region", REGION, "--state-machine-arn", machine,
                                             "--ledger-table", "mgn-cutover-ledger",
                                             "--scheduler-role-arn", SCHEDULER_ROLE]}


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


def _request() -> dict:
    return json.loads(REQUEST_FILE.read_text())


def _write(tmp_path, request: dict, name: str = "request.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(request, indent=4))
    return str(path)


# -- start ----------------------------------------------------------------------------------------------------


def test_the_execution_name_is_the_wave_and_a_hash_of_the_canonical_request():
    request = _request()
    reordered = json.loads(json.dumps(request, sort_keys=True))
    reordered = dict(reversed(list(reordered.items())))
    changed = {**request, "options": {**request["options"], "noReboot": True}}

    digest = hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert commands.execution_name(request) == f"wave-1-{digest[:16]}"
    # Key order and spacing do not matter; any value does.
    assert commands.execution_name(reordered) == commands.execution_name(request)
    assert commands.execution_name(changed) != commands.execution_name(request)


def test_starting_the_same_request_twice_is_one_execution(stack, tmp_path):
    # GIVEN the request, once as written and once with its keys in another order
    first_file = str(REQUEST_FILE)
    second_file = _write(tmp_path, dict(reversed(list(_request().items()))))

    # WHEN it is started twice
    first_code, first = run("start", first_file, *stack["flags"])
    second_code, second = run("start", second_file, "--json", *stack["flags"])

    # THEN both name the same execution, the second says it was started before, and only one exists
    assert (first_code, second_code) == (0, 0)
    assert json.loads(second)["executionArn"] == first.strip()
    assert json.loads(second)["started"] is False
    executions = boto3.client("stepfunctions", region_name=REGION).list_executions(
        stateMachineArn=stack["machine"])["executions"]
    assert [e["executionArn"] for e in executions] == [first.strip()]
    # ... and its input is the canonical request the name hashes
    described = boto3.client("stepfunctions", region_name=REGION).describe_execution(executionArn=first.strip())
    assert described["input"] == commands.canonical_json(_request())


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r["servers"][0].update(sourceServerId="i-not-a-server"), "servers[0].sourceServerId"),
    (lambda r: r["options"].update(maxConcurrency="10"), "options.maxConcurrency"),
    (lambda r: r.update(colour="blue"), "colour"),
])
def test_a_bad_request_exits_2_naming_the_field_and_starts_nothing(stack, tmp_path, capsys, change, field):
    request = _request()
    change(request)

    code, _ = run("start", _write(tmp_path, request), *stack["flags"])

    assert code == commands.EXIT_USAGE
    assert field in capsys.readouterr().err
    assert boto3.client("stepfunctions", region_name=REGION).list_executions(
        stateMachineArn=stack["machine"])["executions"] == []


# -- watch and exit codes -------------------------------------------------------------------------------------


def test_watch_without_follow_on_a_running_execution_exits_3_with_a_row_per_server(stack):
    # GIVEN an execution that is still running (moto without its interpreter never ends one)
    _, arn = run("start", str(REQUEST_FILE), *stack["flags"])

    # WHEN it is looked at once, by name
    code, text = run("watch", arn.strip().rsplit(":", 1)[1], "--no-follow", "--plain", *stack["flags"])

    # THEN the exit code says it runs, and the table lists both servers of the request, not started
    assert code == commands.EXIT_RUNNING
    assert "Execution wave-1-" in text and ": RUNNING" in text
    for server in ("s-1a2b3c4d5e6f70001", "s-1a2b3c4d5e6f70002"):
        assert any(line.startswith(server) and "waiting" in line for line in text.splitlines())


def test_an_execution_aws_does_not_know_exits_4(stack, capsys):
    code, _ = run("watch", "wave-1-0000000000000000", "--no-follow", *stack["flags"])
    assert code == commands.EXIT_REFUSED
    assert "ExecutionDoesNotExist" in capsys.readouterr().err


def test_the_stack_outputs_say_where_the_pipeline_is_and_flags_win(capsys):
    # GIVEN a stack whose outputs name the state machine and the ledger, but no scheduler role
    client = boto3.client("cloudformation", region_name=REGION)
    stubber = Stubber(client)
    outputs = [{"OutputKey": "CutoverStateMachineArn", "OutputValue": "arn:aws:states:us-east-1:1:stateMachine:m"},
               {"OutputKey": "LedgerTableName", "OutputValue": "ledger"}]
    stubber.add_response("describe_stacks", {"Stacks": [{"StackName": "mgn-cutover", "CreationTime": "2026-01-01",
                                                         "StackStatus": "CREATE_COMPLETE", "Outputs": outputs}]},
                         {"StackName": "mgn-cutover"})
    session = type("Session", (), {"client": lambda self, service: client})()

    with stubber:
        found = Stack(session, given={"ledger_table": "from-the-flag"})
        # THEN the outputs are read once, a flag wins over an output, and a missing one names its flag
        assert found.state_machine_arn.endswith(":stateMachine:m")
        assert found.ledger_table == "from-the-flag"
        assert found.execution_arn("wave-1-x") == "arn:aws:states:us-east-1:1:execution:m:wave-1-x"
        with pytest.raises(StackOutputMissing, match="SchedulerRoleArn; give it with --scheduler-role-arn"):
            found.scheduler_role_arn
    stubber.assert_no_pending_responses()


def test_help_documents_every_exit_code(capsys):
    code, _ = run("--help")
    text = capsys.readouterr().out
    assert code == 0
    for line in ("0  succeeded", "1  failed", "2  usage or bad input", "3  still running", "4  AWS refused"):
        assert line in text
    assert "--sandbox" in text and "tests/cli" in text


def test_a_missing_request_file_and_an_unknown_command_are_usage_errors(capsys):
    assert run("start", "no/such/file.json")[0] == commands.EXIT_USAGE
    assert "no such file" in capsys.readouterr().err
    assert run("frobnicate")[0] == commands.EXIT_USAGE


def test_sandbox_refuses_the_commands_that_need_state_beyond_one_process(capsys):
    assert run("--sandbox", "status", "s-1a2b3c4d5e6f70001")[0] == commands.EXIT_USAGE
    assert "start and preflight only" in capsys.readouterr().err


# -- schedule --------------------------------------------------------------------------------------------------


def test_schedule_creates_one_schedule_that_starts_the_request_once_as_its_execution(stack):
    # WHEN the wave is scheduled for a time in Paris
    code, text = run("schedule", str(REQUEST_FILE), "--at", "2099-06-01T02:30:00", "--timezone", "Europe/Paris",
                     "--json", *stack["flags"])

    # THEN exactly one schedule exists: one-time, no flexible window, deleted after it ran
    assert code == 0
    scheduler = boto3.client("scheduler", region_name=REGION)
    schedules = scheduler.list_schedules()["Schedules"]
    assert [s["Name"] for s in schedules] == [commands.execution_name(_request())]
    found = scheduler.get_schedule(Name=schedules[0]["Name"])
    assert found["ScheduleExpression"] == "at(2099-06-01T02:30:00)"
    assert found["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert found["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert found["ActionAfterCompletion"] == "DELETE"
    # ... that calls StartExecution on the state machine, as the scheduler role, with the deterministic
    # name and the canonical request: the execution `start` would make
    target = found["Target"]
    assert target["Arn"] == "arn:aws:scheduler:::aws-sdk:sfn:startExecution"
    assert target["RoleArn"] == SCHEDULER_ROLE
    assert json.loads(target["Input"]) == {"StateMachineArn": stack["machine"],
                                           "Name": commands.execution_name(_request()),
                                           "Input": commands.canonical_json(_request())}
    assert json.loads(text)["execution"] == commands.execution_name(_request())


@pytest.mark.parametrize(("argv", "named"), [
    (["--at", "2099-06-01 02:30"], "--at"),
    (["--at", "2099-13-01T02:30:00"], "--at"),
    (["--at", "2001-06-01T02:30:00"], "--at"),
    (["--at", "2099-06-01T02:30:00", "--timezone", "Mars/Olympus_Mons"], "--timezone"),
])
def test_schedule_refuses_a_bad_time_and_creates_nothing(stack, capsys, argv, named):
    code, _ = run("schedule", str(REQUEST_FILE), *argv, *stack["flags"])
    assert code == commands.EXIT_USAGE
    assert named in capsys.readouterr().err
    assert boto3.client("scheduler", region_name=REGION).list_schedules()["Schedules"] == []


def test_schedule_refuses_a_bad_request_and_creates_nothing(stack, tmp_path, capsys):
    request = _request()
    request["servers"][1]["target"]["accountId"] = "12345"
    code, _ = run("schedule", _write(tmp_path, request), "--at", "2099-06-01T02:30:00", *stack["flags"])
    assert code == commands.EXIT_USAGE
    assert "servers[1].target.accountId" in capsys.readouterr().err
    assert boto3.client("scheduler", region_name=REGION).list_schedules()["Schedules"] == []


# -- status and cleanup while a cutover runs --------------------------------------------------------------------


def test_cleanup_refuses_while_the_server_is_claimed_by_a_running_execution(stack):
    # GIVEN a server claimed by an execution that still runs, with an image recorded
    _, arn = run("start", str(REQUEST_FILE), *stack["flags"])
    holder = arn.strip().rsplit(":", 1)[1]
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    item = {"sourceServerId": {"S": "s-1a2b3c4d5e6f70001"}, "holder": {"S": holder}, "claimStatus": {"S": "CLAIMED"},
            "artifacts": {"M": {"image": {"S": "ami-0123456789abcdef0"}}}}
    dynamodb.put_item(TableName="mgn-cutover-ledger", Item=item)

    # WHEN status and cleanup are asked about it
    status_code, status_text = run("status", "s-1a2b3c4d5e6f70001", *stack["flags"])
    cleanup_code, cleanup_text = run("cleanup", "s-1a2b3c4d5e6f70001", *stack["flags"])

    # THEN both say it is held by the running execution (exit 3), and the ledger is untouched
    assert (status_code, cleanup_code) == (commands.EXIT_RUNNING, commands.EXIT_RUNNING)
    assert f"CLAIMED by {holder} (RUNNING)" in status_text and "cutover image ami-0123456789abcdef0" in status_text
    assert "still running: nothing removed" in cleanup_text
    assert dynamodb.get_item(TableName="mgn-cutover-ledger",
                             Key={"sourceServerId": {"S": "s-1a2b3c4d5e6f70001"}})["Item"] == item


def test_status_of_a_server_no_cutover_ever_claimed_says_nothing_is_left(stack):
    code, text = run("status", "s-0000000000000000f", *stack["flags"])
    assert code == 0 and "no entry" in text


def test_each_preflight_run_is_a_new_execution_and_never_the_cutovers():
    # A preflight changes nothing and is run again once what it found is fixed: the same request gets a new
    # execution each time, and never the name its cutover will have.
    from datetime import datetime, timezone

    request = commands.preflight_request(_request())
    first = commands.preflight_name(request, datetime(2026, 12, 1, 20, 0, 0, tzinfo=timezone.utc))
    again = commands.preflight_name(request, datetime(2026, 12, 1, 20, 5, 0, tzinfo=timezone.utc))
    assert first == f"wave-1-pf-20261201T200000-{commands.execution_name(request)[-8:]}"
    assert again != first and commands.execution_name(_request()) not in (first, again)
    assert len(first) <= 80
