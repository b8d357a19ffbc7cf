"""A request naming an MGN wave or application: its servers come from MGN, placed by their tags, or it is
refused by name before anything is changed."""

from __future__ import annotations

import pytest

from pipeline import entry
from pipeline.errors import (
    MgnSelectionArchived,
    MgnSelectionEmpty,
    MgnSelectionNotFound,
    RequestInvalid,
    TargetNotAllowed,
    WaveTooLarge,
)
from pipeline.request import max_servers
from sandbox.world import World
from tests.unit.support import EXECUTION, OUTSIDE_ACCOUNT, SECOND_TARGET_ACCOUNT, TARGET_ACCOUNT, load_event

WEB, APP, DB, INTRANET, RETIRED, REPORTING = (f"s-1a2b3c4d5e6f7010{index}" for index in range(1, 7))
SUBNET = "subnet-0a1b2c3d4e5f60001"
OTHER_SUBNET = "subnet-0b1c2d3e4f5a60002"
GROUP, OTHER_GROUP = "sg-0a1b2c3d4e5f60001", "sg-0b1c2d3e4f5a60002"


def tags(account: str = TARGET_ACCOUNT, subnet: str = SUBNET, groups: str | None = GROUP, **extra: str) -> dict:
    found = {"mgn-cutover:target-account": account, "mgn-cutover:subnet": subnet}
    if groups is not None:
        found["mgn-cutover:security-groups"] = groups
    return found | {f"mgn-cutover:{key.replace('_', '-')}": value for key, value in extra.items()}


@pytest.fixture
def simulator(moto_world):
    """The sandbox's MGN, with nothing in it yet."""
    with World() as world:
        yield world.mgn


@pytest.fixture
def mgn_asked(simulator, monkeypatch):
    """The MGN operations the pipeline calls, in order."""
    calls: list[str] = []
    answer = simulator.handle

    def recorded(operation, account_id, params):
        calls.append(operation)
        return answer(operation, account_id, params)

    monkeypatch.setattr(simulator, "handle", recorded)
    return calls


@pytest.fixture
def wave_3(simulator):
    """MGN's wave "wave-3": billing (web and app in the first target account, db in the second) and intranet
    (one live server, one archived); "wave-4" holds reporting. Returns the simulator."""
    simulator.add_source_server(WEB, tags=tags(instance_type="m5.large", private_ip="10.20.1.41"))
    simulator.add_source_server(APP, tags=tags(groups=f"{GROUP} sg-0a1b2c3d4e5f60002"))
    simulator.add_source_server(DB, tags=tags(SECOND_TARGET_ACCOUNT, OTHER_SUBNET, OTHER_GROUP))
    simulator.add_source_server(INTRANET, tags=tags(SECOND_TARGET_ACCOUNT, OTHER_SUBNET, OTHER_GROUP))
    simulator.add_source_server(RETIRED, tags=tags()).is_archived = True
    simulator.add_source_server(REPORTING, tags=tags())
    wave = simulator.add_wave("wave-3")
    simulator.add_application("billing", wave_id=wave.wave_id, server_ids=[WEB, APP, DB])
    simulator.add_application("intranet", wave_id=wave.wave_id, server_ids=[INTRANET, RETIRED])
    simulator.add_application("reporting", wave_id=simulator.add_wave("wave-4").wave_id, server_ids=[REPORTING])
    return simulator


def targets(wave: dict) -> dict[str, dict]:
    return {server["sourceServerId"]: server["target"] for server in wave["servers"]}


# --- the servers MGN holds ------------------------------------------------------------------------------------------


def test_a_wave_named_by_name_brings_every_live_server_of_its_applications_placed_by_their_tags(wave_3):
    # GIVEN MGN's wave-3, its servers tagged with their placement
    # WHEN a request naming it is normalized
    wave = entry.normalize({"mgnWave": "wave-3"}, EXECUTION)

    # THEN the wave holds billing's three servers and intranet's live one (not the archived one, nor wave-4's),
    # each where its tags say, and is named after MGN's wave
    placed = targets(wave)
    assert sorted(placed) == sorted([WEB, APP, DB, INTRANET])
    assert wave["wave"] == "wave-3" and wave["execution"] == EXECUTION
    assert (placed[WEB]["accountId"], placed[WEB]["subnetId"], placed[WEB]["securityGroupIds"]) == (
        TARGET_ACCOUNT, SUBNET, [GROUP])
    assert (placed[WEB]["instanceType"], placed[WEB]["privateIpAddress"]) == ("m5.large", "10.20.1.41")
    assert placed[APP]["securityGroupIds"] == [GROUP, "sg-0a1b2c3d4e5f60002"]
    assert (placed[DB]["accountId"], placed[DB]["subnetId"]) == (SECOND_TARGET_ACCOUNT, OTHER_SUBNET)
    assert all(server.get("launchJobId") is None for server in wave["servers"])


def test_a_wave_named_by_id_is_the_same_wave(wave_3):
    # GIVEN wave-3's id in MGN
    wave_id = next(w.wave_id for w in wave_3.waves.values() if w.name == "wave-3")

    # WHEN it is named by id, with a wave name of the request's own
    wave = entry.normalize({"wave": "billing-night", "mgnWave": wave_id}, EXECUTION)

    # THEN it brings the same servers, under the request's name
    assert sorted(targets(wave)) == sorted([WEB, APP, DB, INTRANET])
    assert wave["wave"] == "billing-night"


@pytest.mark.parametrize("by", ["name", "id"])
def test_an_application_brings_only_its_own_servers(wave_3, by):
    # GIVEN the application intranet, named by name or by id
    application = next(a for a in wave_3.applications.values() if a.name == "intranet")

    # WHEN a request naming it is normalized
    wave = entry.normalize({"mgnApplication": application.name if by == "name" else application.application_id},
                           EXECUTION)

    # THEN it holds intranet's live server only
    assert list(targets(wave)) == [INTRANET]


def test_target_defaults_fill_only_what_a_servers_tags_leave_out(wave_3):
    # GIVEN defaults for every server of the wave, and the web server's own instance type tag
    request = {"mgnWave": "wave-3", "targetDefaults": {
        "instanceType": "t3.large", "instanceProfile": "MgnCutoverRestoredInstance",
        "kmsKeyId": "alias/mgn-cutover-target", "tags": {"MigrationWave": "wave-3"}}}

    # WHEN it is normalized
    placed = targets(entry.normalize(request, EXECUTION))

    # THEN a tag wins over a default; a default fills every server whose tags lack the field
    assert placed[WEB]["instanceType"] == "m5.large"
    assert {placed[server]["instanceType"] for server in (APP, DB, INTRANET)} == {"t3.large"}
    assert {placed[server]["kmsKeyId"] for server in placed} == {"alias/mgn-cutover-target"}
    assert {placed[server]["instanceProfile"] for server in placed} == {"MgnCutoverRestoredInstance"}
    assert all(placed[server]["tags"] == {"MigrationWave": "wave-3"} for server in placed)


def test_default_security_groups_stand_in_for_a_missing_security_groups_tag(wave_3):
    # GIVEN a server of the wave with no security groups tag, and default groups in the request
    wave_3.servers[INTRANET].tags.pop("mgn-cutover:security-groups")

    # WHEN it is normalized
    placed = targets(entry.normalize({"mgnWave": "wave-3", "targetDefaults": {"securityGroupIds": [OTHER_GROUP]}},
                                     EXECUTION))

    # THEN that server takes the defaults; a tagged server keeps its own groups
    assert placed[INTRANET]["securityGroupIds"] == [OTHER_GROUP]
    assert placed[APP]["securityGroupIds"] == [GROUP, "sg-0a1b2c3d4e5f60002"]


def test_every_page_of_mgns_answers_is_read(wave_3, mgn_asked):
    # GIVEN MGN answering one wave, application or server a page
    wave_3.page_size = 1

    # WHEN the wave is normalized
    wave = entry.normalize({"mgnWave": "wave-3"}, EXECUTION)

    # THEN every server is there, read over several pages of each list
    assert sorted(targets(wave)) == sorted([WEB, APP, DB, INTRANET])
    assert mgn_asked.count("ListWaves") >= 2 and mgn_asked.count("DescribeSourceServers") >= 4


def test_the_wave_keeps_the_requests_options(wave_3):
    # GIVEN the options of the console wave on a request naming an MGN wave
    options = load_event("console-wave.json")["options"]

    # WHEN / THEN they are the wave's, as for a request listing its servers
    wave = entry.normalize({"mgnWave": "wave-3", "options": options}, EXECUTION)
    assert wave["options"]["pollIntervalSeconds"] == options["pollIntervalSeconds"]
    assert wave["options"]["agentConfigParameter"] == options["agentConfigParameter"]


def test_a_wave_named_by_a_cutover_requested_event_is_read_the_same_way(wave_3):
    # GIVEN the request as the detail of a "Cutover Requested" event
    event = load_event("cutover-requested.json")
    event["detail"] = {"mgnWave": "wave-3"}

    # WHEN / THEN it brings the same servers
    assert sorted(targets(entry.normalize(event, EXECUTION))) == sorted([WEB, APP, DB, INTRANET])


# --- refused before MGN is asked ------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_, field", [
    ({"wave": "w"}, "servers"),
    ({"mgnWave": "wave-3", "servers": []}, "servers, mgnWave"),
    ({"mgnWave": "wave-3", "mgnApplication": "billing"}, "mgnWave, mgnApplication"),
    ({"servers": load_event("console-wave.json")["servers"], "targetDefaults": {}}, "targetDefaults"),
    ({"mgnWave": ""}, "mgnWave"),
    ({"mgnWave": " wave-3"}, "mgnWave"),
    ({"mgnWave": 3}, "mgnWave"),
    ({"mgnApplication": "x" * 257}, "mgnApplication"),
    ({"mgnWave": "wave-3", "targetDefaults": {"accountId": TARGET_ACCOUNT}}, "targetDefaults.accountId"),
    ({"mgnWave": "wave-3", "targetDefaults": {"subnetId": SUBNET}}, "targetDefaults.subnetId"),
    ({"mgnWave": "wave-3", "targetDefaults": {"privateIpAddress": "10.20.1.9"}}, "targetDefaults.privateIpAddress"),
    ({"mgnWave": "wave-3", "targetDefaults": {"instanceType": "big"}}, "targetDefaults.instanceType"),
    ({"mgnWave": "wave-3", "targetDefaults": {"securityGroupIds": [GROUP, GROUP]}}, "targetDefaults.securityGroupIds"),
    ({"mgnWave": "wave-3", "targetDefaults": {"tags": {"aws:x": "y"}}}, "targetDefaults.tags"),
    ({"mgnWave": "wave-3", "targetDefaults": {"colour": "blue"}}, "targetDefaults.colour"),
    ({"mgnWave": "wave-3", "options": {"maxConcurrency": "10"}}, "options.maxConcurrency"),
    ({"mgnWave": "wave-3", "wave": "a wave"}, "wave"),
], ids=["none of the three", "servers and a wave", "a wave and an application", "defaults for listed servers",
        "empty wave name", "wave name with a leading space", "wave name a number", "application name too long",
        "default account", "default subnet", "default private IP", "malformed default instance type",
        "default group twice", "default aws: tag", "unknown default", "option of the wrong type",
        "wave name EC2 tags cannot carry"])
def test_a_malformed_request_is_refused_naming_the_field_before_mgn_is_asked(wave_3, mgn_asked, request_, field):
    # GIVEN a request naming an MGN wave or application with one thing wrong
    # WHEN it is normalized
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize(request_, EXECUTION)

    # THEN the error names the field, and MGN was never asked
    assert refused.value.field == field
    assert refused.value.reason
    assert mgn_asked == []


# --- refused once MGN has answered -----------------------------------------------------------------------------------


@pytest.mark.parametrize("request_, field", [({"mgnWave": "wave-7"}, "mgnWave"),
                                             ({"mgnWave": "wave-00000000000000000"}, "mgnWave"),
                                             ({"mgnApplication": "payroll"}, "mgnApplication")],
                         ids=["wave by name", "wave by id", "application"])
def test_a_wave_or_application_mgn_does_not_hold_is_refused(wave_3, request_, field):
    # GIVEN a name or id MGN holds no wave or application by
    # WHEN / THEN it is refused, naming the field and what was asked for
    with pytest.raises(MgnSelectionNotFound) as refused:
        entry.normalize(request_, EXECUTION)
    assert refused.value.field == field
    assert request_[field] in refused.value.reason


def test_an_archived_wave_or_application_is_refused(wave_3):
    # GIVEN an archived wave and an archived application in MGN
    wave_3.add_wave("wave-0", archived=True)
    wave_3.add_application("mainframe", archived=True)

    # WHEN / THEN each is refused as archived, by name
    with pytest.raises(MgnSelectionArchived, match="wave-0") as wave:
        entry.normalize({"mgnWave": "wave-0"}, EXECUTION)
    with pytest.raises(MgnSelectionArchived, match="mainframe") as application:
        entry.normalize({"mgnApplication": "mainframe"}, EXECUTION)
    assert (wave.value.field, application.value.field) == ("mgnWave", "mgnApplication")


def test_a_wave_without_live_applications_or_servers_is_refused_as_empty(wave_3):
    # GIVEN a wave with no application, a wave whose one application is archived, and an application whose
    # one server is archived
    wave_3.add_wave("wave-5")
    archived_only = wave_3.add_wave("wave-6")
    wave_3.add_application("retired", wave_id=archived_only.wave_id, archived=True)
    wave_3.add_application("leftovers", server_ids=[RETIRED])

    # WHEN / THEN each is refused as empty, naming the field and what it holds no live one of
    for request_, field, what in [({"mgnWave": "wave-5"}, "mgnWave", "no application"),
                                  ({"mgnWave": "wave-6"}, "mgnWave", "no application"),
                                  ({"mgnApplication": "leftovers"}, "mgnApplication", "no source server")]:
        with pytest.raises(MgnSelectionEmpty) as refused:
            entry.normalize(request_, EXECUTION)
        assert refused.value.field == field and what in refused.value.reason


def test_two_waves_of_the_same_name_are_refused_until_one_is_named_by_id(wave_3):
    # GIVEN a second wave named wave-3
    twin = wave_3.add_wave("wave-3", wave_id="wave-0000000000000000b")

    # WHEN / THEN the name is ambiguous: both ids are named
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize({"mgnWave": "wave-3"}, EXECUTION)
    assert refused.value.field == "mgnWave" and twin.wave_id in refused.value.reason


def application_of(simulator, count: int) -> None:
    server_ids = [f"s-{index:017d}" for index in range(count)]
    for server_id in server_ids:
        simulator.add_source_server(server_id, tags=tags())
    simulator.add_application("everything", server_ids=server_ids)


def test_a_wave_of_more_servers_than_a_request_may_hold_is_refused(simulator, mgn_asked):
    # GIVEN an application of one live server more than a request may hold, answered in pages of 50,
    # and one page more after the limit
    limit = max_servers()
    application_of(simulator, limit + 51)
    simulator.page_size = 50

    # WHEN / THEN it is refused, naming the limit, as soon as MGN's answers pass it (the last page is not read)
    with pytest.raises(WaveTooLarge, match=str(limit)) as refused:
        entry.normalize({"mgnApplication": "everything"}, EXECUTION)
    assert refused.value.field == "mgnApplication"
    assert mgn_asked.count("DescribeSourceServers") == -(-(limit + 1) // 50)


def test_a_wave_of_exactly_the_limit_is_accepted(simulator):
    # GIVEN an application of as many live servers as a request may hold
    application_of(simulator, max_servers())

    # WHEN / THEN all of them are in the wave
    assert len(entry.normalize({"mgnApplication": "everything"}, EXECUTION)["servers"]) == max_servers()


# --- each server's placement, named by server and tag ----------------------------------------------------------------


@pytest.mark.parametrize("missing", ["target-account", "subnet", "security-groups"])
def test_a_server_missing_a_required_tag_is_refused_naming_the_server_and_the_tag(wave_3, missing):
    # GIVEN one server of the wave without one required tag
    wave_3.servers[DB].tags.pop(f"mgn-cutover:{missing}")

    # WHEN / THEN the wave is refused, naming the tag and the server
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize({"mgnWave": "wave-3"}, EXECUTION)
    assert refused.value.field == f"tags.mgn-cutover:{missing}"
    assert DB in refused.value.reason


def test_an_empty_required_tag_counts_as_missing(wave_3):
    # GIVEN a server whose subnet tag is there but blank
    wave_3.servers[APP].tags["mgn-cutover:subnet"] = " "

    # WHEN / THEN it is refused as a missing tag of that server
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize({"mgnWave": "wave-3"}, EXECUTION)
    assert refused.value.field == "tags.mgn-cutover:subnet" and APP in refused.value.reason


@pytest.mark.parametrize("tag, value", [
    ("target-account", "22222222222"), ("subnet", "my-subnet"), ("security-groups", "sg-1 sg-2"),
    ("instance-type", "t3.medium; reboot"), ("private-ip", "8.8.8.8"), ("instance-profile", "a b"),
    ("target-key", "my key"),
])
def test_a_malformed_tag_is_refused_naming_the_server_the_tag_and_its_value(wave_3, tag, value):
    # GIVEN a server of the wave with one malformed placement tag
    wave_3.servers[INTRANET].tags[f"mgn-cutover:{tag}"] = value

    # WHEN / THEN the wave is refused, naming the tag, the server and what the tag holds
    with pytest.raises(RequestInvalid) as refused:
        entry.normalize({"mgnWave": "wave-3"}, EXECUTION)
    assert refused.value.field == f"tags.mgn-cutover:{tag}"
    assert INTRANET in refused.value.reason and value in refused.value.reason


def test_a_server_tagged_for_an_account_outside_the_allowlist_is_refused(wave_3):
    # GIVEN one server of the wave tagged for an account the allowlist does not hold
    wave_3.servers[APP].tags["mgn-cutover:target-account"] = OUTSIDE_ACCOUNT

    # WHEN / THEN the wave is refused by the same check as a listed server's target
    with pytest.raises(TargetNotAllowed) as refused:
        entry.normalize({"mgnWave": "wave-3"}, EXECUTION)
    assert refused.value.account_id == OUTSIDE_ACCOUNT
