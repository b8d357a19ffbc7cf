"""Strict input, rehearsed: every bad request or event fails in the first state, names the field, changes nothing.

One sandbox serves the whole corpus (each bad rehearsal is short): it is built for the console wave, and
every case starts from one of the three entry points' own inputs and breaks one thing.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from sandbox.runner import Sandbox
from tests.rehearsal.helpers import load_event

OUTSIDER = "444444444444"
FIRST_STATE = ("NormalizeRequestFunction", "Normalize Request")


def console(change: Callable[[dict], Any]) -> dict:
    request = copy.deepcopy(load_event("console-wave.json"))
    change(request)
    return request


def custom_event(change: Callable[[dict], Any]) -> dict:
    event = copy.deepcopy(load_event("cutover-requested.json"))
    change(event)
    return event


def mgn_event(change: Callable[[dict], Any] = lambda _: None) -> dict:
    event = copy.deepcopy(load_event("mgn-launch-result.json"))
    # A server of the console wave's world: it exists, so only the event itself is at fault.
    event["resources"] = ["arn:aws:mgn:us-east-1:123456789012:source-server/s-1a2b3c4d5e6f70001"]
    event["detail"]["job-id"] = "mgnjob-1a2b3c4d5e6f70001"
    change(event)
    return event


def target(**fields: Any) -> Callable[[dict], None]:
    def change(request: dict) -> None:
        request["servers"][0]["target"].update(fields)

    return change


def tags(values: dict) -> Callable[[dict], None]:
    return target(tags=values)


def options(**fields: Any) -> Callable[[dict], None]:
    return lambda request: request["options"].update(fields)


def put(path: str, value: Any) -> Callable[[dict], None]:
    """Set a dotted path (numbers index lists)."""
    def change(document: dict) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


def drop(key: str) -> Callable[[dict], None]:
    return lambda document: document.pop(key)


T = "servers[0].target"
SG = "sg-0a1b2c3d4e5f60001"

# (id, input, error, the field the error names)
CORPUS = [
    # -- the console request: ids and types
    ("account id as a number", console(target(accountId=222222222222)), "RequestInvalid", f"{T}.accountId"),
    ("account id of eleven digits", console(target(accountId="22222222222")), "RequestInvalid", f"{T}.accountId"),
    ("account outside the allowlist", console(target(accountId=OUTSIDER)), "TargetNotAllowed", OUTSIDER),
    ("malformed source server id", console(put("servers.0.sourceServerId", "s-123")), "RequestInvalid",
     "servers[0].sourceServerId"),
    ("instance id as source server id", console(put("servers.0.sourceServerId", "i-1a2b3c4d5e6f70001")),
     "RequestInvalid", "servers[0].sourceServerId"),
    ("malformed subnet id", console(target(subnetId="subnet-XYZ")), "RequestInvalid", f"{T}.subnetId"),
    ("no security group", console(target(securityGroupIds=[])), "RequestInvalid", f"{T}.securityGroupIds"),
    ("six security groups", console(target(securityGroupIds=[f"sg-0a1b2c3d4e5f6000{i}" for i in range(6)])),
     "RequestInvalid", f"{T}.securityGroupIds"),
    ("security groups as a string", console(target(securityGroupIds=SG)), "RequestInvalid", f"{T}.securityGroupIds"),
    ("a security group twice", console(target(securityGroupIds=[SG, SG])), "RequestInvalid", f"{T}.securityGroupIds"),
    ("shell in the instance type", console(target(instanceType="t3.medium; rm -rf /")), "RequestInvalid",
     f"{T}.instanceType"),
    ("instance type of 40 characters", console(target(instanceType="t3." + "x" * 37)), "RequestInvalid",
     f"{T}.instanceType"),
    ("public IP", console(target(privateIpAddress="8.8.8.8")), "RequestInvalid", f"{T}.privateIpAddress"),
    ("loopback IP", console(target(privateIpAddress="127.0.0.1")), "RequestInvalid", f"{T}.privateIpAddress"),
    ("instance metadata IP", console(target(privateIpAddress="169.254.169.254")), "RequestInvalid",
     f"{T}.privateIpAddress"),
    ("IP out of range", console(target(privateIpAddress="10.0.0.300")), "RequestInvalid", f"{T}.privateIpAddress"),
    ("IPv6 address", console(target(privateIpAddress="fd00::1")), "RequestInvalid", f"{T}.privateIpAddress"),
    ("path in the instance profile", console(target(instanceProfile="../../admin")), "RequestInvalid",
     f"{T}.instanceProfile"),
    ("key id that is no key", console(target(kmsKeyId="not-a-key")), "RequestInvalid", f"{T}.kmsKeyId"),
    ("launch job id malformed", console(put("servers.0.launchJobId", "mgnjob-../../x")), "RequestInvalid",
     "servers[0].launchJobId"),
    # -- the console request: tags and hostile strings
    ("tag under aws:", console(tags({"aws:createdBy": "me"})), "RequestInvalid", f"{T}.tags"),
    ("tag under the pipeline's prefix", console(tags({"mgn-cutover:managed": "true"})), "RequestInvalid",
     f"{T}.tags"),
    ("tag key of 129 characters", console(tags({"k" * 129: "v"})), "RequestInvalid", f"{T}.tags"),
    ("tag value of 257 characters", console(tags({"Name": "v" * 257})), "RequestInvalid", f"{T}.tags"),
    ("newline in a tag value", console(tags({"Name": "web\nInjected: yes"})), "RequestInvalid", f"{T}.tags"),
    ("NUL in a tag value", console(tags({"Name": "web\x00"})), "RequestInvalid", f"{T}.tags"),
    ("right-to-left override in a tag", console(tags({"Name": "web\u202e10-bd"})), "RequestInvalid", f"{T}.tags"),
    ("zero-width space in a tag key", console(tags({"Na\u200bme": "web"})), "RequestInvalid", f"{T}.tags"),
    ("JSON in a tag value", console(tags({"Name": '{"$ne": null}'})), "RequestInvalid", f"{T}.tags"),
    ("41 tags", console(tags({f"k{i}": "v" for i in range(41)})), "RequestInvalid", f"{T}.tags"),
    ("tag value as a number", console(tags({"Name": 5})), "RequestInvalid", f"{T}.tags.Name"),
    ("wave name with a shell", console(put("wave", "wave-1; curl evil")), "RequestInvalid", "wave"),
    ("wave name of 41 characters", console(put("wave", "w" * 41)), "RequestInvalid", "wave"),
    ("SSM parameter with a space", console(options(agentConfigParameter="x y")), "RequestInvalid",
     "options.agentConfigParameter"),
    # -- the console request: unknown fields, option ranges, list sizes
    ("unknown top-level field", console(put("dryRun", True)), "RequestInvalid", "dryRun"),
    ("unknown target field", console(target(vpcId="vpc-0a1b2c3d")), "RequestInvalid", f"{T}.vpcId"),
    ("unknown server field", console(put("servers.0.priority", 1)), "RequestInvalid", "servers[0].priority"),
    ("misspelt option", console(options(maxConcurency=5)), "RequestInvalid", "options.maxConcurency"),
    ("hostile unknown field name", console(target(**{"<script>" + "A" * 5000: 1})), "RequestInvalid",
     f"{T}.<script>AAAA"),
    ("concurrency 0", console(options(maxConcurrency=0)), "RequestInvalid", "options.maxConcurrency"),
    ("concurrency as a string", console(options(maxConcurrency="10")), "RequestInvalid", "options.maxConcurrency"),
    ("negative poll interval", console(options(pollIntervalSeconds=-1)), "RequestInvalid",
     "options.pollIntervalSeconds"),
    ("poll attempts past the bound", console(options(maxPollAttempts=2501)), "RequestInvalid",
     "options.maxPollAttempts"),
    ("noReboot as yes", console(options(noReboot="yes")), "RequestInvalid", "options.noReboot"),
    ("cleanup as 1", console(options(cleanup=1)), "RequestInvalid", "options.cleanup"),
    ("no servers", console(put("servers", [])), "RequestInvalid", "servers"),
    ("501 servers", console(lambda r: r.update(servers=[
        {**r["servers"][0], "sourceServerId": f"s-{i:017d}"} for i in range(501)])), "RequestInvalid", "servers"),
    ("a server twice", console(lambda r: r["servers"].append(r["servers"][0])), "RequestInvalid",
     "servers[2].sourceServerId"),
    ("a list as the request", [load_event("console-wave.json")], "RequestInvalid", "request"),
    # -- a request naming an MGN wave or application (the console wave's MGN holds none)
    ("servers and an MGN wave", console(put("mgnWave", "wave-3")), "RequestInvalid", "servers, mgnWave"),
    ("an MGN wave MGN does not hold", {"mgnWave": "wave-3"}, "MgnSelectionNotFound", "mgnWave"),
    ("an MGN application by an id MGN does not hold", {"mgnApplication": "app-0123456789abcdef0"},
     "MgnSelectionNotFound", "mgnApplication"),
    ("a default account for an MGN wave", {"mgnWave": "wave-3", "targetDefaults": {"accountId": OUTSIDER}},
     "RequestInvalid", "targetDefaults.accountId"),
    # -- the Cutover Requested event
    ("unknown envelope field", custom_event(put("replayed", True)), "RequestInvalid", "replayed"),
    ("envelope version 1", custom_event(put("version", "1")), "RequestInvalid", "version"),
    ("envelope account malformed", custom_event(put("account", "12345")), "RequestInvalid", "account"),
    ("envelope time malformed", custom_event(put("time", "yesterday")), "RequestInvalid", "time"),
    ("envelope region malformed", custom_event(put("region", "mars-1; x")), "RequestInvalid", "region"),
    ("eleven resources", custom_event(put("resources", [f"arn:aws:x:::{i}" for i in range(11)])),
     "RequestInvalid", "resources"),
    ("event id of 65 characters", custom_event(put("id", "a" * 65)), "RequestInvalid", "id"),
    ("request event from another source", custom_event(put("source", "someone-else")), "RequestInvalid",
     "detail-type"),
    ("event without detail", custom_event(drop("detail")), "RequestInvalid", "request"),
    ("event detail with a bad subnet", custom_event(put("detail.servers.1.target.subnetId", "subnet-nothex")),
     "RequestInvalid", "servers[1].target.subnetId"),
    ("event detail outside the allowlist", custom_event(put("detail.servers.0.target.accountId", OUTSIDER)),
     "TargetNotAllowed", OUTSIDER),
    # -- MGN's launch result event
    ("test launch result", mgn_event(put("detail.state", "TEST_LAUNCH_SUCCEEDED")), "RequestInvalid",
     "detail.state"),
    ("unknown MGN detail field", mgn_event(put("detail.target", OUTSIDER)), "RequestInvalid", "detail.target"),
    ("MGN job id malformed", mgn_event(put("detail.job-id", "mgnjob-1; drop")), "RequestInvalid", "detail.job-id"),
    ("two resources", mgn_event(lambda e: e["resources"].append(e["resources"][0])), "RequestInvalid",
     "resources[0]"),
    ("source server of another account", mgn_event(put(
        "resources", ["arn:aws:mgn:us-east-1:444444444444:source-server/s-1a2b3c4d5e6f70001"])), "RequestInvalid",
     "resources[0]"),
    ("source server of another region", mgn_event(put(
        "resources", ["arn:aws:mgn:eu-west-1:123456789012:source-server/s-1a2b3c4d5e6f70001"])), "RequestInvalid",
     "resources[0]"),
    ("resource that is no ARN", mgn_event(put("resources", ["x/s-1a2b3c4d5e6f70001"])), "RequestInvalid",
     "resources[0]"),
    ("unknown MGN envelope field", mgn_event(put("detail-types", [])), "RequestInvalid", "detail-types"),
    ("server without placement tags", mgn_event(), "RequestInvalid", "tags.mgn-cutover:target-account"),
]


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(load_event("console-wave.json")) as built:
        yield built


def test_the_corpus_is_large_and_covers_every_entry_point():
    assert len(CORPUS) >= 40
    ids = [case[0] for case in CORPUS]
    assert len(set(ids)) == len(ids)
    sources = {case[1].get("source") if isinstance(case[1], dict) else None for case in CORPUS}
    assert sources >= {None, "mgn-cutover", "aws.mgn"}


@pytest.mark.parametrize("bad, error, field", [case[1:] for case in CORPUS], ids=[case[0] for case in CORPUS])
def test_bad_input_fails_in_the_first_state_naming_the_field_and_changes_nothing(sandbox, bad, error, field):
    # GIVEN the sandbox's world as it stands
    before = sandbox.world.inventory()
    invoked = len(sandbox.invocations)

    # WHEN the bad request or event starts an execution
    rehearsal = sandbox.rehearse(bad)

    # THEN the execution failed with the named error, and the message names the field first
    assert rehearsal.status == "FAILED"
    assert rehearsal.error == error
    message = rehearsal.cause["errorMessage"]
    assert message.startswith(field) if error == "RequestInvalid" else field in message
    # hostile input is not echoed at length into the history
    assert len(message) < 400 and "\n" not in message and "\x00" not in message and "\u202e" not in message
    # ... in the first state: no function but Normalize Request ran
    assert sandbox.invocations[invoked:] == [FIRST_STATE]
    # ... and no account changed
    assert rehearsal.inventory == before
    assert sandbox.iam.denied == []
