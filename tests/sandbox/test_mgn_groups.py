"""The MGN simulator's waves and applications: ListWaves, ListApplications and DescribeSourceServers with
their filters and paging, as MGN answers them, and the world file's `mgn` groups."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from sandbox import mgn
from sandbox.world import World, WorldSpecError

from tests.rehearsal.helpers import ROOT

BILLING = ["s-1a2b3c4d5e6f70101", "s-1a2b3c4d5e6f70102"]
INTRANET = ["s-1a2b3c4d5e6f70104", "s-1a2b3c4d5e6f70105"]
SPEC = {
    "servers": {INTRANET[1]: {"archived": True}},
    "mgn": {
        "waves": {"wave-3": {"applications": ["billing", "intranet"]}, "wave-9": {"archived": True}},
        "applications": {"billing": {"servers": BILLING}, "intranet": {"servers": INTRANET},
                         "legacy": {"archived": True, "id": "app-0000000000000000a"}},
    },
}


@pytest.fixture
def grouped(aws):
    """A world whose MGN holds two waves and three applications; returns the migration account's MGN client."""
    with World(SPEC) as world:
        world.add_mgn_groups()
        # Made after the world: a client copies its session's handlers when it is created.
        yield world, boto3.client("mgn")


def ids(answer: dict, key: str) -> list[str]:
    return [item[key] for item in answer["items"]]


def test_list_waves_answers_every_wave_or_those_the_filters_name(grouped):
    # GIVEN the world's waves "wave-3" (live) and "wave-9" (archived)
    world, client = grouped
    live, archived = (mgn.stable_id("wave-", world.migration_account, name) for name in ("wave-3", "wave-9"))

    # WHEN MGN is asked for all of them, by id, and by archival state
    everything = client.list_waves()
    by_id = client.list_waves(filters={"waveIDs": [archived]})
    not_archived = client.list_waves(filters={"isArchived": False})

    # THEN each answer holds what its filters let through, named and shaped as MGN's waves are
    assert sorted(ids(everything, "waveID")) == sorted([live, archived])
    assert ids(by_id, "waveID") == [archived] and by_id["items"][0]["isArchived"] is True
    (wave,) = not_archived["items"]
    assert (wave["waveID"], wave["name"]) == (live, "wave-3")
    assert wave["arn"] == f"arn:aws:mgn:us-east-1:{world.migration_account}:wave/{live}"
    assert wave["waveAggregatedStatus"]["totalApplications"] == 2


def test_list_applications_filters_by_wave_id_and_archival_state(grouped):
    # GIVEN wave-3 of billing and intranet, and the archived application "legacy" in no wave
    world, client = grouped
    wave_id = mgn.stable_id("wave-", world.migration_account, "wave-3")

    # WHEN MGN is asked for the wave's applications, for one by id, and for the archived ones
    of_wave = client.list_applications(filters={"waveIDs": [wave_id], "isArchived": False})
    legacy = client.list_applications(filters={"applicationIDs": ["app-0000000000000000a"]})
    archived = client.list_applications(filters={"isArchived": True})

    # THEN the wave holds its two applications, each naming the wave; "legacy" keeps the id the world gave it
    assert sorted(item["name"] for item in of_wave["items"]) == ["billing", "intranet"]
    assert {item["waveID"] for item in of_wave["items"]} == {wave_id}
    assert [item["name"] for item in legacy["items"]] == ["legacy"]
    assert "waveID" not in legacy["items"][0]
    assert [item["name"] for item in archived["items"]] == ["legacy"]


def test_describe_source_servers_filters_by_application_and_archival_state(grouped):
    # GIVEN intranet's two servers, one of them archived
    world, client = grouped
    intranet = mgn.stable_id("app-", world.migration_account, "intranet")

    # WHEN MGN is asked for the application's servers, then for its servers that are not archived
    every = client.describe_source_servers(filters={"applicationIDs": [intranet]})
    live = client.describe_source_servers(filters={"applicationIDs": [intranet], "isArchived": False})

    # THEN both servers answer with their application; only the live one is not archived
    assert sorted(ids(every, "sourceServerID")) == sorted(INTRANET)
    assert {item["applicationID"] for item in every["items"]} == {intranet}
    assert ids(live, "sourceServerID") == [INTRANET[0]]


def test_list_answers_are_paged_by_max_results_and_next_token(grouped):
    # GIVEN MGN answering one item a page unless the call asks for more
    world, client = grouped
    world.mgn.page_size = 1

    # WHEN the pages are read one by one, and through boto3's paginator
    first = client.list_applications()
    second = client.list_applications(nextToken=first["nextToken"])
    two = client.list_applications(maxResults=2)
    paged = [item["name"] for page in client.get_paginator("list_applications").paginate() for item in page["items"]]

    # THEN each page holds one item and a token to the next, maxResults widens a page, the paginator reads all
    assert len(first["items"]) == len(second["items"]) == 1 and first["items"] != second["items"]
    assert len(two["items"]) == 2 and "nextToken" in two
    assert sorted(paged) == ["billing", "intranet", "legacy"]
    last = client.describe_source_servers(maxResults=1000)
    assert "nextToken" not in last


@pytest.mark.parametrize("operation, filter_name", [("list_waves", "waveIDs"), ("list_applications", "applicationIDs"),
                                                    ("describe_source_servers", "applicationIDs")])
def test_an_id_filter_of_more_than_200_ids_is_a_validation_error(grouped, operation, filter_name):
    # GIVEN 201 ids in one filter
    _, client = grouped
    prefix = "wave-" if filter_name == "waveIDs" else "app-"
    many = [f"{prefix}{index:017d}" for index in range(201)]

    # WHEN / THEN MGN refuses the call, naming the filter
    with pytest.raises(ClientError) as refused:
        getattr(client, operation)(filters={filter_name: many})
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert filter_name in refused.value.response["Error"]["Message"]


def test_world_ids_come_from_the_names_so_a_rehearsal_keeps_them(grouped):
    # GIVEN the world's waves and applications, built from their names
    world, _ = grouped

    # THEN each id is the one its account and name give (the same in every rehearsal), shaped as MGN's are,
    # except where the world file gives an id
    account = world.migration_account
    assert sorted(world.mgn.waves) == sorted(mgn.stable_id("wave-", account, name) for name in ("wave-3", "wave-9"))
    assert sorted(world.mgn.applications) == sorted(
        [mgn.stable_id("app-", account, "billing"), mgn.stable_id("app-", account, "intranet"), "app-0000000000000000a"])
    assert all(len(wave_id) == 22 for wave_id in world.mgn.waves)
    assert all(len(app_id) == 21 for app_id in world.mgn.applications)


@pytest.mark.parametrize("groups, message", [
    ({"waves": {"w": {"applications": ["missing"]}}}, "does not define"),
    ({"waves": {"a": {"applications": ["x"]}, "b": {"applications": ["x"]}}, "applications": {"x": {}}},
     "one wave at most"),
    ({"applications": {"x": {"id": "app-1"}}}, "id must match"),
    ({"applications": {"x": {"servers": "s-1a2b3c4d5e6f70101"}}}, "list of names"),
    ({"applications": {"x": {"archived": "yes"}}}, "true or false"),
    ({"wave": {}}, "unknown keys"),
], ids=["undefined application", "application in two waves", "malformed id", "servers not a list",
        "archived not a boolean", "misspelt key"])
def test_a_world_file_with_inconsistent_mgn_groups_is_refused(aws, groups, message):
    # GIVEN a world spec whose MGN groups MGN could not hold / WHEN it is built / THEN it is refused by name
    with pytest.raises(WorldSpecError, match=message):
        World({"mgn": groups})


def test_the_shipped_wave_world_holds_its_waves_applications_and_archived_server(aws):
    # GIVEN the world file the README rehearses a wave with
    spec = json.loads((ROOT / "sandbox" / "worlds" / "mgn-wave.json").read_text())

    # WHEN it is built
    with World(spec) as world:
        world.add_mgn_groups()
        waves = {wave.name for wave in world.mgn.waves.values()}
        members = {app.name: sorted(s.source_server_id for s in world.mgn.servers.values()
                                    if s.application_id == app.application_id) for app in world.mgn.applications.values()}
        archived = [s.source_server_id for s in world.mgn.servers.values() if s.is_archived]

    # THEN MGN holds both waves, each application's servers, and the one archived server
    assert waves == {"wave-3", "wave-4"}
    assert {name: len(servers) for name, servers in members.items()} == {"billing": 3, "intranet": 2, "reporting": 1}
    assert archived == ["s-1a2b3c4d5e6f70105"]
