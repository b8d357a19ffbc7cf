"""The thin handlers, called the way the state machine calls them: each one's event shape, its result, and
the decorator stack around it. A whole branch runs through them for both servers of the console wave."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import aws, ledger
from pipeline.errors import TargetNotAllowed, TransientAwsError
from sandbox import clock
from sandbox.world import World
from tests.unit.support import (
    EXECUTION,
    INSTANT,
    SOURCE_SERVER_ID,
    WAVE,
    load_event,
    migration_client,
    refuse_calls,
    server_state,
)

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = sorted(path.stem for path in (ROOT / "functions" / "handlers").glob("*.py"))
HANDLERS.remove("__init__")


def handler(name: str):
    return importlib.import_module(f"handlers.{name}").handler


@pytest.fixture
def console_world(moto_world, ledger_table, sharing_key, notification_topic, monkeypatch):
    """Everything the console wave names, in the sandbox: its source servers and both target accounts."""
    # The launch and the image take a little time (one wait each); everything else is done at once.
    speed = {**INSTANT, "mgnLaunchSeconds": 30, "snapshotMiBps": 1024}
    with World.for_request(load_event("console-wave.json"), spec={"speed": speed}) as world:
        monkeypatch.setenv("TARGET_ROLE_EXTERNAL_ID", world.external_id)
        yield world


def normalized_console_wave(context) -> dict:
    return handler("normalize_request")({"input": load_event("console-wave.json"), "execution": EXECUTION}, context)


def until_ready(call, limit: int = 10) -> dict:
    for _ in range(limit):
        result = call()
        if result["ready"]:
            return result
        # As the state machine's Wait does: the world's simulated clock moves on by the wait the check asked for.
        clock.active().sleep(result["nextWaitSeconds"])
    raise AssertionError(f"not ready after {limit} checks: {result}")


def run_branch(item: dict, context) -> dict:
    """One server's branch of the Map, step by step, each result written where the ASL's ResultPath puts it."""
    item["claim"] = handler("claim_server")(item, context)
    item["cutover"] = handler("start_cutover")(item, context)
    item["cutover"] = until_ready(lambda: handler("check_cutover_launch")(item, context))
    item["image"] = handler("create_image")(item, context)
    item["image"] = until_ready(lambda: handler("check_image")({"slot": "image", "state": item}, context))
    item["sharedImage"] = handler("copy_image_for_sharing")(item, context)
    if not item["sharedImage"]["ready"]:
        check = {"slot": "sharedImage", "state": item}
        item["sharedImage"] = until_ready(lambda: handler("check_image")(check, context))
    item["share"] = handler("share_image")(item, context)
    # The default restore: the target's copy is started, the restored instance launched from the shared image,
    # and the copy waited for only after the agent steps.
    item["targetImage"] = handler("copy_image_to_target")(item, context)
    item["restored"] = handler("launch_restored_instance")(item, context)
    item["restored"] = until_ready(lambda: handler("check_restored_instance")(item, context))
    item["finalize"] = handler("finalize_cutover")(item, context)
    item["managed"] = until_ready(lambda: handler("check_managed_instance")(item, context))
    for command, slot in (("install", "agentInstall"), ("configure", "agentConfigure")):
        item[slot] = handler("send_agent_command")({"command": command, "state": item}, context)
        item[slot] = until_ready(lambda: handler("check_agent_command")({"command": command, "state": item}, context))
    check_copy = {"slot": "targetImage", "afterFinalize": True, "state": item}
    item["targetImage"] = until_ready(lambda: handler("check_image")(check_copy, context))
    item["cleanup"] = handler("clean_up")(item, context)
    return handler("release_server")(item, context)


def test_console_wave_cuts_over_through_every_handler(console_world, lambda_context, notification_topic):
    # GIVEN the console wave, started from StartExecution
    wave = normalized_console_wave(lambda_context)

    # WHEN each server's branch runs through the handlers, and the wave is summarized
    results = []
    for server in wave["servers"]:
        item = {"execution": wave["execution"], "wave": wave["wave"], "options": wave["options"], "server": server}
        results.append(run_branch(item, lambda_context))
    summary = handler("summarize_wave")(
        {"wave": wave["wave"], "execution": EXECUTION, "results": results},
        lambda_context,
    )

    # THEN both servers are cut over into their own target accounts, at the requested addresses
    assert [(r["outcome"], r["targetAccountId"], r["privateIpAddress"]) for r in results] == [
        ("CUT_OVER", "222222222222", "10.20.1.10"),
        ("CUT_OVER", "333333333333", "10.30.2.20"),
    ]
    assert (summary["total"], summary["cutOver"], summary["failed"]) == (2, 2, 0)
    inventory = console_world.inventory()
    # AND each restored instance runs in its target account, and the migration account kept no image of the cutover
    for result in results:
        instances = inventory["accounts"][result["targetAccountId"]]["instances"]
        assert [i["state"] for i in instances if i["id"] == result["restoredInstanceId"]] == ["running"]
    assert inventory["accounts"]["123456789012"]["images"] == []
    assert inventory["accounts"]["123456789012"]["kmsGrants"] == []
    assert {server["lifeCycle"] for server in inventory["mgn"]["sourceServers"]} == {"CUTOVER"}
    # AND the ledger released both servers with their outcome
    assert [ledger.read(r["sourceServerId"])["claimStatus"] for r in results] == ["RELEASED", "RELEASED"]


def test_a_failure_before_finalize_rolls_back_through_the_handlers(console_world, lambda_context, monkeypatch):
    # GIVEN a branch that got as far as the sharing copy, then the target left the allowlist
    wave = normalized_console_wave(lambda_context)
    item = {"execution": EXECUTION, "wave": wave["wave"], "options": wave["options"], "server": wave["servers"][0]}
    item["claim"] = handler("claim_server")(item, lambda_context)
    item["cutover"] = handler("start_cutover")(item, lambda_context)
    item["cutover"] = until_ready(lambda: handler("check_cutover_launch")(item, lambda_context))
    item["image"] = handler("create_image")(item, lambda_context)
    item["image"] = until_ready(lambda: handler("check_image")({"slot": "image", "state": item}, lambda_context))
    item["sharedImage"] = handler("copy_image_for_sharing")(item, lambda_context)
    monkeypatch.setenv("TARGET_ACCOUNT_ALLOWLIST", "333333333333")

    # WHEN Share With Target fails, and the Catch leads to Roll Back and Release Server
    with pytest.raises(TargetNotAllowed) as failed:
        handler("share_image")(item, lambda_context)
    cause = {"errorType": "TargetNotAllowed", "errorMessage": str(failed.value)}
    item["error"] = {"Error": "TargetNotAllowed", "Cause": json.dumps(cause)}
    item["rollback"] = handler("roll_back")(item, lambda_context)
    report = handler("release_server")(item, lambda_context)

    # THEN the server is rolled back at the share step, and nothing of the cutover is left in the migration account
    assert report["outcome"] == "ROLLED_BACK"
    assert report["error"]["code"] == "TargetNotAllowed"
    migration = console_world.inventory()["accounts"]["123456789012"]
    assert migration["images"] == [] and migration["snapshots"] == []
    assert [i["state"] for i in migration["instances"]] == ["terminated"]
    assert console_world.mgn.servers[item["server"]["sourceServerId"]].life_cycle == "READY_FOR_CUTOVER"


def decorators_of(function) -> list[str]:
    """The code of each function down the __wrapped__ chain (functools.wraps copies the names, not the code)."""
    chain = []
    while function is not None:
        chain.append(function.__code__.co_qualname)
        function = getattr(function, "__wrapped__", None)
    return chain


@pytest.mark.parametrize("name", HANDLERS)
def test_every_handler_wears_the_step_decorator(name):
    # GIVEN any handler module
    # WHEN its handler's wrappers are listed
    chain = decorators_of(handler(name))

    # THEN Logger and Metrics, then the pipeline's step wrapper (ids on every line, transient errors
    # mapped), sit around the module's own function (tracing is off here, as the stack's default)
    assert [name.split(".<locals>")[0] for name in chain] == [
        "Logger.inject_lambda_context",
        "BaseProvider.log_metrics",
        "step",
        "handler",
    ]


def test_the_tracer_wraps_every_handler_only_when_aws_calls_are_traced():
    # GIVEN a fresh interpreter with tracing on (the stack's TraceAwsCalls=true) and one with it off
    probe = ("import sys; sys.path.insert(0, 'functions'); import handlers.create_image as m; f = m.handler; chain = []\n"
             "while f is not None: chain.append(f.__code__.co_qualname); f = getattr(f, '__wrapped__', None)\n"
             "print('Tracer.capture_lambda_handler' in ' '.join(chain), 'aws_xray_sdk.core' in sys.modules)")

    def run(disabled: str) -> str:
        env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": disabled, "AWS_DEFAULT_REGION": "us-east-1"}
        return subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                              check=True).stdout.split()

    # WHEN each imports a handler / THEN only the traced one wears the Tracer and loads the X-Ray SDK
    assert run("false") == ["True", "True"]
    assert run("true") == ["False", "False"]


def test_normalize_handler_accepts_a_custom_event(settings, lambda_context):
    # EventBridge delivers the whole envelope (version, id, account, time, region, resources) with the detail.
    # GIVEN a Cutover Requested event / WHEN the handler runs / THEN the wave is normalized
    event = load_event("cutover-requested.json")
    wave = handler("normalize_request")({"input": event, "execution": EXECUTION}, lambda_context)
    assert wave["execution"] == EXECUTION and len(wave["servers"]) == 2


def test_claim_handler_refuses_a_server_held_by_another_execution(ledger_table, lambda_context):
    # GIVEN another execution holds the server
    ledger.claim(SOURCE_SERVER_ID, "wave-0-earlier", WAVE)

    # WHEN / THEN this execution's claim raises ServerClaimed, which the ASL catches into Report Refusal
    from pipeline.errors import ServerClaimed

    with pytest.raises(ServerClaimed):
        handler("claim_server")(server_state(), lambda_context)
    report = handler("release_server")(server_state(error={"Error": "ServerClaimed", "Cause": "held"}), lambda_context)
    assert report["outcome"] == "REFUSED"
    assert ledger.holder(SOURCE_SERVER_ID) == "wave-0-earlier"


def test_a_throttled_table_surfaces_as_transient(ledger_table, lambda_context):
    # GIVEN DynamoDB throttles the ledger
    refuse_calls(aws.client("dynamodb"), "UpdateItem", "ProvisionedThroughputExceededException")

    # WHEN / THEN the claim handler raises TransientAwsError, which the ASL retries
    with pytest.raises(TransientAwsError, match="ProvisionedThroughputExceededException"):
        handler("claim_server")(server_state(), lambda_context)


def test_a_denied_call_is_not_retried_as_transient(ledger_table, lambda_context):
    # GIVEN DynamoDB denies the claim / WHEN the handler runs / THEN the denial reaches the ASL as is
    from botocore.exceptions import ClientError

    refuse_calls(aws.client("dynamodb"), "UpdateItem", "AccessDeniedException")
    with pytest.raises(ClientError) as raised:
        handler("claim_server")(server_state(), lambda_context)
    assert not isinstance(raised.value, TransientAwsError)
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"


def test_handler_log_lines_name_the_execution_and_server(ledger_table, lambda_context, log_lines):
    # GIVEN a claimed server / WHEN it is released / THEN the line names the execution and server
    handler("claim_server")(server_state(), lambda_context)
    handler("release_server")(server_state(claim={"claimed": True}), lambda_context)
    [line] = [line for line in log_lines() if line.get("message") == "Server released"]
    assert (line["execution"], line["source_server_id"]) == (EXECUTION, SOURCE_SERVER_ID)
    assert line["outcome"] == "ROLLED_BACK"
    assert line["function_name"] == lambda_context.function_name


def test_release_handler_counts_the_server_by_outcome(ledger_table, lambda_context, log_lines):
    # GIVEN a branch that rolled back
    handler("claim_server")(server_state(), lambda_context)
    log_lines()

    # WHEN it is released
    handler("release_server")(server_state(claim={"claimed": True}), lambda_context)

    # THEN one Servers metric, dimensioned by outcome, reaches CloudWatch in the embedded metric format
    [metric] = [line for line in log_lines() if "_aws" in line]
    [directive] = metric["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "MgnCutover"
    assert directive["Metrics"] == [{"Name": "Servers", "Unit": "Count"}]
    assert "Outcome" in directive["Dimensions"][0]
    assert (metric["Servers"], metric["Outcome"]) == ([1.0], "ROLLED_BACK")


def test_summarize_handler_publishes_the_wave(notification_topic, lambda_context):
    # GIVEN a subscriber to the topic / WHEN the wave is summarized / THEN it gets the subject
    sqs = migration_client("sqs")
    queue = sqs.create_queue(QueueName="wave")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    migration_client("sns").subscribe(TopicArn=notification_topic, Protocol="sqs", Endpoint=arn)
    result = {"sourceServerId": SOURCE_SERVER_ID, "targetAccountId": "222222222222", "outcome": "REFUSED",
              "restoredInstanceId": None, "privateIpAddress": None, "failedStep": "Claim Server"}

    summary = handler("summarize_wave")({"wave": WAVE, "execution": EXECUTION, "results": [result]}, lambda_context)

    assert summary["failed"] == 1
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"])["Subject"] == "Cutover wave wave-1: 0 of 1 cut over"
