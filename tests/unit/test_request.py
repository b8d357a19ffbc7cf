"""The wave request: what a valid one becomes, and which field each invalid one is refused on."""

from __future__ import annotations

import copy

import pytest

from pipeline.errors import RequestInvalid
from pipeline.request import MAX_PREFLIGHT_SERVERS, MAX_TAGS, parse_request
from tests.unit.support import load_event

MINIMAL_SERVER = {
    "sourceServerId": "s-1a2b3c4d5e6f70001",
    "target": {"accountId": "222222222222", "subnetId": "subnet-0a1b2c3d", "securityGroupIds": ["sg-0a1b2c3d"]},
}


def console_wave() -> dict:
    return load_event("console-wave.json")


def first_target(request: dict) -> dict:
    return request["servers"][0]["target"]


def test_console_wave_is_valid_and_keeps_every_field():
    # GIVEN the console example wave
    payload = console_wave()

    # WHEN it is parsed
    request = parse_request(payload).model_dump(by_alias=True)

    # THEN both servers keep their placement, and the options are the ones the example gives
    assert request["wave"] == "wave-1"
    assert [server["sourceServerId"] for server in request["servers"]] == ["s-1a2b3c4d5e6f70001", "s-1a2b3c4d5e6f70002"]
    assert first_target(request) == {**first_target(payload), "tags": {"Name": "web-01", "Application": "storefront"}}
    assert request["servers"][1]["target"]["instanceType"] is None
    assert request["options"]["agentConfigParameter"] == "AmazonCloudWatch-linux"
    assert request["servers"][0]["launchJobId"] is None


def test_minimal_request_gets_the_documented_defaults():
    # GIVEN a request with one server and nothing optional
    payload = {"servers": [MINIMAL_SERVER]}

    # WHEN it is parsed
    request = parse_request(payload).model_dump(by_alias=True)

    # THEN every default is filled in
    assert request["wave"] == "wave"
    assert request["options"] == {
        "maxConcurrency": 10,
        "noReboot": False,
        "agentConfigParameter": None,
        "installAgent": True,
        "cleanup": True,
        "pollIntervalSeconds": 30,
        "maxPollAttempts": 240,
        "maxWaitSeconds": 14400,
        "restoreFrom": "sharedImage",
        "approval": {"required": False, "timeoutSeconds": 14400},
        "maxReplicationLagSeconds": 900,
    }
    assert request["mode"] == "cutover"
    assert first_target(request)["tags"] == {}
    assert first_target(request)["privateIpAddress"] is None


@pytest.mark.parametrize(
    "option, value",
    [
        ("maxConcurrency", 1),
        ("maxConcurrency", 200),
        ("pollIntervalSeconds", 1),
        ("pollIntervalSeconds", 3600),
        ("maxPollAttempts", 1),
        ("maxPollAttempts", 240),
    ],
)
def test_option_bounds_are_inclusive(option, value):
    # GIVEN an option at the edge of its range
    payload = {"servers": [MINIMAL_SERVER], "options": {option: value}}

    # WHEN / THEN it is accepted as given
    assert parse_request(payload).model_dump(by_alias=True)["options"][option] == value


def test_long_ids_and_arn_keys_are_accepted():
    # GIVEN 17-digit subnet and group ids, a key ARN and forty tags
    payload = copy.deepcopy({"servers": [MINIMAL_SERVER]})
    target = first_target(payload)
    target.update(
        subnetId="subnet-0a1b2c3d4e5f60001",
        securityGroupIds=["sg-0a1b2c3d4e5f60001", "sg-0a1b2c3d"],
        kmsKeyId="arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        tags={f"team-{index}": "storefront" for index in range(MAX_TAGS)},
    )

    # WHEN / THEN they are kept
    assert first_target(parse_request(payload).model_dump(by_alias=True))["kmsKeyId"].endswith("1234567890ab")


def with_target(**changes):
    def change(request):
        first_target(request).update(changes)

    return change


def with_server(**changes):
    def change(request):
        request["servers"][0].update(changes)

    return change


def with_options(**changes):
    def change(request):
        request["options"].update(changes)

    return change


def without_target_field(name):
    def change(request):
        del first_target(request)[name]

    return change


def with_servers(servers):
    def change(request):
        request["servers"] = servers(request)

    return change


def with_top_level(**changes):
    def change(request):
        request.update(changes)

    return change


def many_servers(count):
    def servers(request):
        template = request["servers"][0]
        return [{**template, "sourceServerId": f"s-{index:017d}"} for index in range(count)]

    return servers


# Each case: what is wrong, the change to the console wave, the field named, and words the reason must hold.
INVALID = [
    ("account id too short", with_target(accountId="22222222222"), "servers[0].target.accountId", "pattern"),
    ("account id as a number", with_target(accountId=222222222222), "servers[0].target.accountId", "string"),
    ("account id with letters", with_target(accountId="22222222222a"), "servers[0].target.accountId", "pattern"),
    ("source server id too short", with_server(sourceServerId="s-1234"), "servers[0].sourceServerId", "pattern"),
    (
        "source server id of another kind",
        with_server(sourceServerId="i-1a2b3c4d5e6f70001"),
        "servers[0].sourceServerId",
        "pattern",
    ),
    ("subnet id not hex", with_target(subnetId="subnet-xyz12345"), "servers[0].target.subnetId", "pattern"),
    ("subnet id of another kind", with_target(subnetId="sg-0a1b2c3d"), "servers[0].target.subnetId", "pattern"),
    ("missing subnet", without_target_field("subnetId"), "servers[0].target.subnetId", "required"),
    (
        "malformed security group",
        with_target(securityGroupIds=["sg-1"]),
        "servers[0].target.securityGroupIds[0]",
        "pattern",
    ),
    (
        "second security group malformed",
        with_target(securityGroupIds=["sg-0a1b2c3d", "group-web"]),
        "servers[0].target.securityGroupIds[1]",
        "pattern",
    ),
    ("no security group", with_target(securityGroupIds=[]), "servers[0].target.securityGroupIds", "at least 1"),
    (
        "six security groups",
        with_target(securityGroupIds=[f"sg-0a1b2c3{index}" for index in range(6)]),
        "servers[0].target.securityGroupIds",
        "at most 5",
    ),
    (
        "duplicate security group",
        with_target(securityGroupIds=["sg-0a1b2c3d", "sg-0a1b2c3d"]),
        "servers[0].target.securityGroupIds",
        "must not repeat a security group",
    ),
    ("public IP", with_target(privateIpAddress="8.8.8.8"), "servers[0].target.privateIpAddress", "private IPv4"),
    ("multicast IP", with_target(privateIpAddress="224.0.0.1"), "servers[0].target.privateIpAddress", "private IPv4"),
    (
        "IP out of range",
        with_target(privateIpAddress="10.0.0.300"),
        "servers[0].target.privateIpAddress",
        "IPv4 address",
    ),
    ("IPv6 address", with_target(privateIpAddress="fd00::10"), "servers[0].target.privateIpAddress", "IPv4 address"),
    (
        "IP with a prefix",
        with_target(privateIpAddress="10.20.1.10/24"),
        "servers[0].target.privateIpAddress",
        "IPv4 address",
    ),
    ("upper-case instance type", with_target(instanceType="T3.MEDIUM"), "servers[0].target.instanceType", "pattern"),
    (
        "instance profile with a space",
        with_target(instanceProfile="Restored Instance"),
        "servers[0].target.instanceProfile",
        "pattern",
    ),
    ("key that is no key", with_target(kmsKeyId="my-key"), "servers[0].target.kmsKeyId", "pattern"),
    ("malformed launch job", with_server(launchJobId="job-1"), "servers[0].launchJobId", "pattern"),
    ("unknown field in the target", with_target(subnet="subnet-0a1b2c3d"), "servers[0].target.subnet", "Extra inputs"),
    (
        "unknown field in a server",
        with_server(targetAccount="222222222222"),
        "servers[0].targetAccount",
        "Extra inputs",
    ),
    ("misspelt option", with_options(noreboot=True), "options.noreboot", "Extra inputs"),
    ("unknown top-level field", with_top_level(dryrun=True), "dryrun", "Extra inputs"),
    ("tag key with aws: prefix", with_target(tags={"aws:cloudformation:stack": "x"}), "servers[0].target.tags", "aws:"),
    ("tag key with AWS: prefix", with_target(tags={"AWS:owner": "x"}), "servers[0].target.tags", "aws:"),
    ("tag key too long", with_target(tags={"k" * 129: "x"}), "servers[0].target.tags", "1 to 128 characters"),
    ("empty tag key", with_target(tags={"": "x"}), "servers[0].target.tags", "1 to 128 characters"),
    ("tag value too long", with_target(tags={"Name": "v" * 257}), "servers[0].target.tags", "at most 256"),
    (
        "too many tags",
        with_target(tags={f"k{index}": "v" for index in range(MAX_TAGS + 1)}),
        "servers[0].target.tags",
        "at most 40",
    ),
    ("tag with a character EC2 refuses", with_target(tags={"Name": "web;01"}), "servers[0].target.tags", "characters"),
    ("concurrency zero", with_options(maxConcurrency=0), "options.maxConcurrency", "greater than or equal to 1"),
    (
        "concurrency above a job",
        with_options(maxConcurrency=201),
        "options.maxConcurrency",
        "less than or equal to 200",
    ),
    (
        "no poll interval",
        with_options(pollIntervalSeconds=0),
        "options.pollIntervalSeconds",
        "greater than or equal to 1",
    ),
    (
        "poll interval above an hour",
        with_options(pollIntervalSeconds=3601),
        "options.pollIntervalSeconds",
        "less than or equal",
    ),
    ("no poll attempt", with_options(maxPollAttempts=0), "options.maxPollAttempts", "greater than or equal to 1"),
    ("too many poll attempts", with_options(maxPollAttempts=10001), "options.maxPollAttempts", "less than or equal"),
    ("no time to wait", with_options(maxWaitSeconds=0), "options.maxWaitSeconds", "greater than or equal to 1"),
    ("a wait longer than a day", with_options(maxWaitSeconds=86401), "options.maxWaitSeconds", "less than or equal"),
    (
        "agent parameter with a space",
        with_options(agentConfigParameter="cw config"),
        "options.agentConfigParameter",
        "pattern",
    ),
    ("wave name with a space", with_top_level(wave="wave 1"), "wave", "pattern"),
    ("wave name too long", with_top_level(wave="w" * 41), "wave", "pattern"),
    ("no server", with_top_level(servers=[]), "servers", "at least 1"),
    ("servers not a list", with_top_level(servers={"sourceServerId": "s-1a2b3c4d5e6f70001"}), "servers", "list"),
    ("too many servers", with_servers(many_servers(501)), "servers", "at most 500"),
    ("unknown restore source", with_options(restoreFrom="snapshot"), "options.restoreFrom", "'sharedImage'"),
    ("unknown mode", with_top_level(mode="dry-run"), "mode", "'preflight'"),
    ("negative replication lag", with_options(maxReplicationLagSeconds=-1), "options.maxReplicationLagSeconds",
     "greater than or equal to 0"),
    (
        "server named twice",
        with_servers(lambda request: request["servers"] + [request["servers"][0]]),
        "servers[2].sourceServerId",
        "already in the wave",
    ),
]


@pytest.mark.parametrize(
    "change, field, reason_words", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_request_names_the_field_and_the_reason(change, field, reason_words):
    # GIVEN the console wave with one thing wrong
    payload = console_wave()
    change(payload)

    # WHEN it is parsed
    with pytest.raises(RequestInvalid) as refused:
        parse_request(payload)

    # THEN the error names the field by its dotted path, and says why in words
    assert refused.value.field == field
    assert reason_words.lower() in refused.value.reason.lower()
    assert str(refused.value) == f"{field}: {refused.value.reason}"
    assert not refused.value.reason.startswith("Value error")


def test_a_wave_of_five_hundred_servers_is_accepted():
    # GIVEN a large wave: each server gets its own MGN job, and copies past EC2's limit wait for a slot
    payload = console_wave()
    with_servers(many_servers(500))(payload)

    # WHEN / THEN it is accepted whole
    assert len(parse_request(payload).servers) == 500


def test_restore_from_the_shared_image_is_the_default_and_the_target_image_an_option():
    # GIVEN the console wave as it is, and with the classic restore asked for
    classic = console_wave()
    with_options(restoreFrom="targetImage")(classic)

    # WHEN both are parsed / THEN the default launches from the shared image, the option from the target's copy
    assert parse_request(console_wave()).options.restore_from == "sharedImage"
    assert parse_request(classic).options.restore_from == "targetImage"


@pytest.mark.parametrize("payload", [None, [], "wave-1", 42, [{"servers": []}]], ids=repr)
def test_a_request_that_is_not_an_object_is_refused(payload):
    # GIVEN something that is not a JSON object
    # WHEN it is parsed
    with pytest.raises(RequestInvalid) as refused:
        parse_request(payload)

    # THEN the request as a whole is named
    assert (refused.value.field, refused.value.reason) == ("request", "must be a JSON object")


def test_request_model_is_frozen():
    # GIVEN a parsed request
    request = parse_request({"servers": [MINIMAL_SERVER]})

    # WHEN a step tried to change it, THEN it cannot
    with pytest.raises(ValueError):
        request.servers[0].target.subnet_id = "subnet-0b1c2d3e"


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "255.255.255.255", "0.0.0.0"])
def test_addresses_no_instance_can_hold_are_refused(address):
    # GIVEN a private IP that EC2 can never assign to an instance in a subnet
    payload = console_wave()
    with_target(privateIpAddress=address)(payload)

    # WHEN / THEN it is refused in the first state, not at launch after the images were copied
    with pytest.raises(RequestInvalid) as refused:
        parse_request(payload)
    assert refused.value.field == "servers[0].target.privateIpAddress"


def test_tags_under_the_pipelines_own_prefix_are_refused():
    # GIVEN a request tag that collides with a tag the pipeline puts on the restored instance
    payload = console_wave()
    with_target(tags={"mgn-cutover:source-server": "s-0000000000000000"})(payload)

    # WHEN / THEN it is refused: RunInstances would get the key twice, and the idempotency look-up reads it
    with pytest.raises(RequestInvalid) as refused:
        parse_request(payload)
    assert refused.value.field == "servers[0].target.tags"


def test_poll_attempts_a_child_execution_cannot_hold_are_refused():
    # GIVEN a request whose one poll loop would need more history than a Standard execution keeps: each
    # check of a loop adds about nine events (Wait entered/exited, five for the Lambda task, Choice
    # entered/exited), so 3000 checks pass the 25,000-event limit before WaitTimedOut could end the
    # loop, and the child execution fails without its rollback
    payload = console_wave()
    with_options(maxPollAttempts=3000)(payload)

    # WHEN / THEN it is refused at validation
    with pytest.raises(RequestInvalid) as refused:
        parse_request(payload)
    assert refused.value.field == "options.maxPollAttempts"


@pytest.mark.parametrize(
    "change, field",
    [
        (with_options(maxConcurrency="5"), "options.maxConcurrency"),
        (with_options(maxConcurrency=True), "options.maxConcurrency"),
        (with_options(noReboot="yes"), "options.noReboot"),
        (with_options(cleanup=1), "options.cleanup"),
        (with_options(pollIntervalSeconds=30.5), "options.pollIntervalSeconds"),
    ],
    ids=["number as text", "boolean as number", "yes as boolean", "1 as boolean", "fractional seconds"],
)
def test_values_of_the_wrong_type_are_not_coerced(change, field):
    # GIVEN an option of the right meaning but the wrong JSON type
    payload = console_wave()
    change(payload)

    # WHEN / THEN it is refused rather than read as something the engineer may not have meant
    with pytest.raises(RequestInvalid) as refused:
        parse_request(payload)
    assert refused.value.field == field


@pytest.mark.parametrize(
    "name, shown",
    [("x" * 300, "x" * 61 + "..."), ("bad\nname\u202e", "bad?name?")],
    ids=["long", "control characters"],
)
def test_an_unknown_field_name_is_echoed_short_and_printable(name, shown):
    # GIVEN a request with an unknown field whose name the sender chose freely
    payload = console_wave()
    payload[name] = True

    # WHEN / THEN the error names it, cut short and without control or format characters
    with pytest.raises(RequestInvalid) as refused:
        parse_request(payload)
    assert refused.value.field == shown


def test_an_address_of_the_shared_address_space_is_accepted():
    # GIVEN a subnet in a VPC CIDR from 100.64.0.0/10 (RFC 6598: not routable on the internet; EC2's own
    # CreateVpc reference uses 100.68.0.0/18 as its example block, and it is a common secondary CIDR)
    payload = console_wave()
    with_target(privateIpAddress="100.68.1.10")(payload)

    # WHEN / THEN the restored instance may be placed there
    assert first_target(parse_request(payload).model_dump(by_alias=True))["privateIpAddress"] == "100.68.1.10"


def test_a_preflight_of_more_servers_than_its_report_can_carry_is_refused_naming_the_limit():
    # GIVEN a preflight naming one server more than its per-check report fits in a Step Functions state
    servers = [{"sourceServerId": f"s-{i:017d}", "target": {"accountId": "222222222222",
                "subnetId": "subnet-0a1b2c3d4e5f60001", "securityGroupIds": ["sg-0a1b2c3d4e5f60001"]}}
               for i in range(MAX_PREFLIGHT_SERVERS + 1)]

    # WHEN it is parsed / THEN the error names the field and says to check the wave in parts
    with pytest.raises(RequestInvalid) as refused:
        parse_request({"mode": "preflight", "servers": servers})
    assert refused.value.field == "servers" and "in parts" in refused.value.reason

    # ... while the same wave as a cutover, and a preflight at the limit, are accepted
    assert len(parse_request({"servers": servers}).servers) == MAX_PREFLIGHT_SERVERS + 1
    assert len(parse_request({"mode": "preflight", "servers": servers[:-1]}).servers) == MAX_PREFLIGHT_SERVERS
