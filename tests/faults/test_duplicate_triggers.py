"""The same request started twice, or one EventBridge event delivered twice: one cutover, one refusal."""

from __future__ import annotations

import copy

from sandbox import faults
from sandbox.runner import Sandbox
from tests.faults.helpers import TARGET_ACCOUNT, one_server_request, servers_of
from tests.rehearsal.helpers import lifecycle_of, live_instances, load_event


def _run_twice_at_once(sandbox: Sandbox, first_input: dict, second_input: dict) -> list[dict]:
    arns = [sandbox.start(first_input, name="first-delivery"), sandbox.start(second_input, name="second-delivery")]
    ended = [sandbox.wait(arn) for arn in arns]
    return [faults.json.loads(described.get("output") or described.get("cause")) for described in ended]


def _assert_one_cutover_one_refusal(results: list[dict], inventory: dict, server_id: str) -> None:
    outcomes = sorted((servers_of({"output": result})[0]["outcome"], result["execution"]) for result in results)
    (cut_over, holder), (refused, refused_execution) = outcomes
    assert (cut_over, refused) == ("CUT_OVER", "REFUSED")
    refusal = servers_of({"output": next(r for r in results if r["execution"] == refused_execution)})[0]
    # The refusal names the execution that holds the server, and nothing was rolled back for it
    assert refusal["error"]["type"] == "ServerClaimed"
    assert f"held by execution {holder}" in refusal["error"]["message"]
    assert "rollback" not in refusal
    # One restored instance, one image, the server cut over once
    (instance,) = live_instances(inventory, TARGET_ACCOUNT)
    assert len(inventory["accounts"][TARGET_ACCOUNT]["images"]) == 1
    assert lifecycle_of(inventory) == {server_id: "CUTOVER"}


def test_two_executions_naming_the_same_server_run_one_cutover():
    # GIVEN the same request started twice at once, under two execution names
    request = one_server_request()
    with Sandbox(request) as sandbox:
        # WHEN both run
        results = _run_twice_at_once(sandbox, request, copy.deepcopy(request))
        inventory = sandbox.world.inventory()

    # THEN one cut the server over and the other refused at once, naming the first
    _assert_one_cutover_one_refusal(results, inventory, request["servers"][0]["sourceServerId"])


def test_one_eventbridge_event_delivered_twice_runs_one_cutover():
    # GIVEN a Cutover Requested event for one server, which EventBridge delivers twice
    event = load_event("cutover-requested.json")
    event["detail"] = one_server_request() | {"wave": event["detail"].get("wave", "wave")}
    with Sandbox(event) as sandbox:
        # WHEN both deliveries start the state machine
        results = _run_twice_at_once(sandbox, event, copy.deepcopy(event))
        inventory = sandbox.world.inventory()

    # THEN one cutover, one refusal, nothing duplicated
    _assert_one_cutover_one_refusal(results, inventory, event["detail"]["servers"][0]["sourceServerId"])
