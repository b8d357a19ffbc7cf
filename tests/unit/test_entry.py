"""The first state: every entry point becomes one wave request, or is refused by name."""

from __future__ import annotations

import pytest

from pipeline import entry
from pipeline.request import parse_mgn_launch
from pipeline.errors import RequestInvalid, ServerNotReady, TargetNotAllowed
from tests.unit.support import EXECUTION, OUTSIDE_ACCOUNT, SECOND_TARGET_ACCOUNT, TARGET_ACCOUNT, load_event

SERVER_ID = "s-1a2b3c4d5e6f70001"
SERVER_ARN = f"arn:aws:mgn:us-east-1:123456789012:source-server/{SERVER_ID}"


def custom_event(detail: dict, detail_type: str = "Cutover Requested", source: str = "mgn-cutover") -> dict:
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2025-01-20T08:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def mgn_launch_event(state: str = "CUTOVER_LAUNCH_SUCCEEDED", resources: list | None = None) -> dict:
    return custom_event(
        {"state": state, "job-id": "mgnjob-1a2b3c4d5e6f70001"},
        detail_type="MGN Source Server Launch Result",
        source="aws.mgn",
    ) | {"resources": [SERVER_ARN] if resources is None else resources}


@pytest.fixture
def allowlist(settings):
    """settings allows the two target accounts of the console wave."""
    return {TARGET_ACCOUNT, SECOND_TARGET_ACCOUNT}


def test_plain_request_becomes_the_wave_with_its_execution(allowlist):
    # GIVEN the console wave, started with StartExecution
    request = load_event("console-wave.json")

    # WHEN it is normalized
    wave = entry.normalize(request, EXECUTION)

    # THEN the wave carries the execution, both servers and the request's options
    assert wave["execution"] == EXECUTION
    assert wave["wave"] == "wave-1"
    assert [server["target"]["accountId"] for server in wave["servers"]] == [TARGET_ACCOUNT, SECOND_TARGET_ACCOUNT]
    assert wave["options"]["agentConfigParameter"] == "AmazonCloudWatch-linux"


def test_custom_event_detail_is_the_request(allowlist):
    # GIVEN the console wave sent as a "Cutover Requested" custom event
    event = custom_event(load_event("console-wave.json"))

    # WHEN it is normalized
    wave = entry.normalize(event, EXECUTION)

    # THEN the result is the same as starting with the request itself
    assert wave == entry.normalize(load_event("console-wave.json"), EXECUTION)


def test_default_agent_parameter_fills_a_request_without_one(allowlist, monkeypatch):
    # GIVEN a stack default for the agent configuration, and a request that names none
    monkeypatch.setenv("DEFAULT_AGENT_CONFIG_PARAMETER", "AmazonCloudWatch-default")
    request = load_event("console-wave.json")
    del request["options"]["agentConfigParameter"]

    # WHEN it is normalized
    wave = entry.normalize(request, EXECUTION)

    # THEN the default is written into the options every later step reads
    assert wave["options"]["agentConfigParameter"] == "AmazonCloudWatch-default"


def test_request_parameter_wins_over_the_default(allowlist, monkeypatch):
    # GIVEN a stack default and a request with its own parameter
    monkeypatch.setenv("DEFAULT_AGENT_CONFIG_PARAMETER", "AmazonCloudWatch-default")

    # WHEN it is normalized
    wave = entry.normalize(load_event("console-wave.json"), EXECUTION)

    # THEN the request's own parameter is kept
    assert wave["options"]["agentConfigParameter"] == "AmazonCloudWatch-linux"


@pytest.mark.parametrize(
    "detail_type, source",
    [
        ("Cutover Requested", "my-app"),
        ("Cutover requested", "mgn-cutover"),
        ("MGN Source Server Lifecycle State Change", "aws.mgn"),
        ("MGN Source Server Launch Result", "mgn-cutover"),
        ("EC2 AMI State Change", "aws.ec2"),
    ],
)
def test_other_events_are_refused_naming_the_detail_type(allowlist, detail_type, source):
    # GIVEN an event that does not start a cutover
    event = custom_event(load_event("console-wave.json"), detail_type=detail_type, source=source)

    # WHEN it is normalized
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize(event, EXECUTION)

    # THEN the detail-type is named, with what the event was
    assert refused.value.field == "detail-type"
    assert detail_type in refused.value.reason and source in refused.value.reason


@pytest.mark.parametrize("state", ["TEST_LAUNCH_SUCCEEDED", "CUTOVER_LAUNCH_FAILED", "TEST_LAUNCH_FAILED", None])
def test_mgn_launch_result_other_than_cutover_success_is_refused(allowlist, state):
    # GIVEN MGN's launch result event for a test launch or a failed launch
    event = mgn_launch_event(state=state)

    # WHEN it is normalized
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize(event, EXECUTION)

    # THEN the state is named, and the reason says which state would start a cutover
    assert refused.value.field == "detail.state"
    assert "CUTOVER_LAUNCH_SUCCEEDED" in refused.value.reason


@pytest.mark.parametrize("resources", [[], ["s-1a2b3c4d5e6f70001"]], ids=["none", "bare id"])
def test_mgn_event_without_a_source_server_arn_is_refused(allowlist, resources):
    # GIVEN a cutover launch event whose resources do not name the source server by ARN
    event = mgn_launch_event(resources=resources)

    # WHEN / THEN it is refused naming resources[0]
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize(event, EXECUTION)
    assert refused.value.field == "resources[0]"


@pytest.mark.parametrize("account", [OUTSIDE_ACCOUNT, "123456789012"], ids=["outsider", "migration account"])
def test_target_outside_the_allowlist_is_refused(allowlist, account):
    # GIVEN a valid request whose second server targets an account outside the allowlist
    request = load_event("console-wave.json")
    request["servers"][1]["target"]["accountId"] = account

    # WHEN it is normalized
    with pytest.raises(TargetNotAllowed) as refused:
        entry.normalize(request, EXECUTION)

    # THEN the error names the account
    assert refused.value.account_id == account
    assert account in str(refused.value)


def test_allowlist_entries_are_trimmed(monkeypatch, settings):
    # GIVEN an allowlist written with spaces and an empty entry
    monkeypatch.setenv("TARGET_ACCOUNT_ALLOWLIST", f" {TARGET_ACCOUNT} , ,{SECOND_TARGET_ACCOUNT} ")

    # WHEN / THEN both accounts are allowed
    assert len(entry.normalize(load_event("console-wave.json"), EXECUTION)["servers"]) == 2


def test_invalid_custom_event_detail_names_the_request_field(allowlist):
    # GIVEN a custom event whose request has a bad subnet
    request = load_event("console-wave.json")
    request["servers"][1]["target"]["subnetId"] = "subnet-nothex"

    # WHEN / THEN the field is named as in the request itself
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize(custom_event(request), EXECUTION)
    assert refused.value.field == "servers[1].target.subnetId"


def test_custom_event_without_detail_is_refused(allowlist):
    # GIVEN a custom event with no detail
    event = custom_event({})
    del event["detail"]

    # WHEN / THEN it is refused as a request that is not an object
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize(event, EXECUTION)
    assert refused.value.field == "request"


# --- the tag schema of source servers -------------------------------------------------------------------------------


def tagged_server(**tags) -> dict:
    return {"arn": SERVER_ARN, "tags": {f"mgn-cutover:{key.replace('_', '-')}": value for key, value in tags.items()}}


def test_placement_comes_from_the_mgn_cutover_tags():
    # GIVEN a source server with every placement tag
    server = tagged_server(
        target_account=TARGET_ACCOUNT,
        subnet="subnet-0a1b2c3d4e5f60001",
        security_groups="sg-0a1b2c3d4e5f60001 sg-0a1b2c3d4e5f60002",
        instance_type="t3.large",
        private_ip="10.20.1.10",
        instance_profile="MgnCutoverRestoredInstance",
        target_key="alias/mgn-cutover-target",
    )

    # WHEN the placement is read
    placement = entry.placement_from_tags(SERVER_ID, server)

    # THEN each tag lands in its request field; security groups are split on spaces
    assert placement == {
        "accountId": TARGET_ACCOUNT,
        "subnetId": "subnet-0a1b2c3d4e5f60001",
        "securityGroupIds": ["sg-0a1b2c3d4e5f60001", "sg-0a1b2c3d4e5f60002"],
        "instanceType": "t3.large",
        "privateIpAddress": "10.20.1.10",
        "instanceProfile": "MgnCutoverRestoredInstance",
        "kmsKeyId": "alias/mgn-cutover-target",
    }


def test_placement_ignores_tags_outside_the_schema():
    # GIVEN the required tags and unrelated ones
    server = tagged_server(target_account=TARGET_ACCOUNT, subnet="subnet-0a1b2c3d", security_groups="sg-0a1b2c3d")
    server["tags"].update({"Name": "web-01", "mgn-cutover:colour": "blue"})

    # WHEN / THEN only the schema's fields are read
    assert entry.placement_from_tags(SERVER_ID, server) == {
        "accountId": TARGET_ACCOUNT,
        "subnetId": "subnet-0a1b2c3d",
        "securityGroupIds": ["sg-0a1b2c3d"],
    }


@pytest.mark.parametrize("missing", ["target-account", "subnet", "security-groups"])
def test_a_missing_required_tag_is_named(missing):
    # GIVEN a source server without one of the three required tags
    server = tagged_server(target_account=TARGET_ACCOUNT, subnet="subnet-0a1b2c3d", security_groups="sg-0a1b2c3d")
    del server["tags"][f"mgn-cutover:{missing}"]

    # WHEN the placement is read
    with pytest.raises(RequestInvalid) as refused:
        entry.placement_from_tags(SERVER_ID, server)

    # THEN the tag is named, and the source server
    assert refused.value.field == f"tags.mgn-cutover:{missing}"
    assert SERVER_ID in refused.value.reason


# --- MGN's own launch result event, against the sandbox's MGN ---------------------------------------------------------

PLACEMENT_TAGS = {
    "mgn-cutover:target-account": TARGET_ACCOUNT,
    "mgn-cutover:subnet": "subnet-0a1b2c3d4e5f60001",
    "mgn-cutover:security-groups": "sg-0a1b2c3d4e5f60001 sg-0a1b2c3d4e5f60002",
    "mgn-cutover:private-ip": "10.20.1.10",
}


@pytest.fixture
def console_cutover(world):
    """A server someone cut over from the MGN console; returns the job MGN's event names."""

    def launch(tags: dict) -> str:
        world.mgn.add_source_server(SERVER_ID, tags=tags)
        return world.mgn.start_console_cutover([SERVER_ID], "mgnjob-1a2b3c4d5e6f70001").job_id

    return launch


def test_mgn_cutover_launch_event_becomes_a_one_server_wave(console_cutover):
    # GIVEN a cutover launched in the MGN console, the server tagged with its placement
    job_id = console_cutover({**PLACEMENT_TAGS, "Name": "web-01"})

    # WHEN MGN's launch result event is normalized
    wave = entry.normalize(mgn_launch_event(), EXECUTION)

    # THEN the wave holds that one server, placed as its tags say, picking up MGN's job
    [server] = wave["servers"]
    assert wave["wave"] == f"mgn-{SERVER_ID}"
    assert wave["execution"] == EXECUTION
    assert server["sourceServerId"] == SERVER_ID
    assert server["launchJobId"] == job_id
    assert server["target"]["accountId"] == TARGET_ACCOUNT
    assert server["target"]["subnetId"] == "subnet-0a1b2c3d4e5f60001"
    assert server["target"]["securityGroupIds"] == ["sg-0a1b2c3d4e5f60001", "sg-0a1b2c3d4e5f60002"]
    assert server["target"]["privateIpAddress"] == "10.20.1.10"
    assert wave["options"]["maxPollAttempts"] == 240


def test_mgn_event_for_a_server_without_placement_tags_is_refused(console_cutover):
    # GIVEN the console cutover of a server that nobody tagged for the pipeline
    console_cutover({key: value for key, value in PLACEMENT_TAGS.items() if key != "mgn-cutover:subnet"})

    # WHEN / THEN the missing tag is named
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize(mgn_launch_event(), EXECUTION)
    assert refused.value.field == "tags.mgn-cutover:subnet"


def test_mgn_event_with_a_malformed_tag_names_the_target_field(console_cutover):
    # GIVEN a malformed subnet tag / WHEN normalized / THEN the target field is named
    console_cutover({**PLACEMENT_TAGS, "mgn-cutover:subnet": "my-subnet"})
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize(mgn_launch_event(), EXECUTION)
    assert refused.value.field == "servers[0].target.subnetId"


def test_mgn_event_for_a_target_outside_the_allowlist_is_refused(console_cutover):
    # GIVEN a tagged target outside the allowlist / WHEN normalized / THEN it is refused
    console_cutover({**PLACEMENT_TAGS, "mgn-cutover:target-account": OUTSIDE_ACCOUNT})
    with pytest.raises(TargetNotAllowed):
        entry.normalize(mgn_launch_event(), EXECUTION)


def test_mgn_event_for_a_server_mgn_does_not_know_is_refused(world):
    # GIVEN an event for a server MGN does not hold / WHEN normalized / THEN it is refused
    with pytest.raises(ServerNotReady, match=SERVER_ID):
        entry.normalize(mgn_launch_event(), EXECUTION)


# --- the EventBridge envelope and MGN's detail ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, field",
    [
        ({"version": "1"}, "version"),
        ({"id": "not an id!"}, "id"),
        ({"time": "yesterday"}, "time"),
        ({"region": "mars"}, "region"),
        ({"account": "1234"}, "account"),
        ({"resources": [f"{SERVER_ARN[:-3]}{index:03d}" for index in range(11)]}, "resources"),
        ({"forwardedBy": "someone"}, "forwardedBy"),
    ],
    ids=["version", "id", "time", "region", "account", "too many resources", "unknown field"],
)
def test_custom_event_with_a_malformed_envelope_is_refused(allowlist, change, field):
    # GIVEN a "Cutover Requested" event whose envelope is not what EventBridge sends
    event = custom_event(load_event("console-wave.json")) | change

    # WHEN / THEN the envelope field is named
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize(event, EXECUTION)
    assert refused.value.field == field


def test_custom_event_replayed_by_eventbridge_is_accepted(allowlist):
    # GIVEN an event EventBridge replays / WHEN normalized / THEN it is a request like any other
    event = custom_event(load_event("console-wave.json")) | {"replay-name": "wave-1-replay"}
    assert len(entry.normalize(event, EXECUTION)["servers"]) == 2


def test_documented_shape_of_mgns_launch_result_is_read(settings):
    # GIVEN an event shaped as MGN documents its launch result
    event = mgn_launch_event()

    # WHEN / THEN the server and the job come out of it
    assert parse_mgn_launch(event) == (SERVER_ID, "mgnjob-1a2b3c4d5e6f70001")


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda event: event["detail"].pop("job-id"), "detail.job-id"),
        (lambda event: event["detail"].update({"job-id": "job-1"}), "detail.job-id"),
        (lambda event: event["detail"].update({"sourceServerId": SERVER_ID}), "detail.sourceServerId"),
        (lambda event: event["resources"].append(SERVER_ARN), "resources[0]"),
        (lambda event: event.update(resources=[SERVER_ARN.replace("123456789012", "999999999999")]), "resources[0]"),
        (lambda event: event.update(resources=[SERVER_ARN.replace("us-east-1", "eu-west-1")]), "resources[0]"),
    ],
    ids=["no job", "malformed job", "unknown detail field", "two resources", "other account", "other region"],
)
def test_mgn_event_that_is_not_mgns_own_is_refused_before_mgn_is_asked(settings, change, field):
    # GIVEN a launch result event that MGN of this account and region would not have sent
    event = mgn_launch_event()
    change(event)

    # WHEN / THEN it is refused naming the field, before any call to MGN (none is mocked here)
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize(event, EXECUTION)
    assert refused.value.field == field
