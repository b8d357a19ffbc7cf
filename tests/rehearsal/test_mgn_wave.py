"""A request naming an MGN wave: every live server of the wave is cut over where its tags say, and a server
tagged for an account outside the allowlist stops the wave at Normalize Request with nothing changed."""

from __future__ import annotations

import copy
import json

from sandbox.runner import Sandbox
from tests.rehearsal.helpers import MIGRATION_ACCOUNT, ROOT, lifecycle_of, live_instances, load_event

WAVE_WORLD = json.loads((ROOT / "sandbox" / "worlds" / "mgn-wave.json").read_text())
FIRST, SECOND, OUTSIDER = "222222222222", "333333333333", "444444444444"
# wave-3: billing (web, app, db) and intranet (one live server, one archived); wave-4: reporting.
WEB, APP, DB, INTRANET, RETIRED, REPORTING = (f"s-1a2b3c4d5e6f7010{index}" for index in range(1, 7))


def restored_by_server(inventory: dict, account: str) -> dict[str, dict]:
    return {instance["tags"]["mgn-cutover:source-server"]: instance for instance in live_instances(inventory, account)}


def test_a_request_naming_an_mgn_wave_cuts_over_every_live_server_of_it_where_its_tags_say():
    # GIVEN MGN's wave-3 and the request naming it, with defaults for the fields the tags leave out
    request = load_event("mgn-wave.json")

    # WHEN it is rehearsed
    with Sandbox(request, WAVE_WORLD) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN the four live servers of the wave are cut over, and no other
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    assert sorted(server["sourceServerId"] for server in rehearsal.output["servers"]) == sorted(
        [WEB, APP, DB, INTRANET])
    assert lifecycle_of(rehearsal.inventory) == {WEB: "CUTOVER", APP: "CUTOVER", DB: "CUTOVER", INTRANET: "CUTOVER",
                                                 RETIRED: "READY_FOR_CUTOVER", REPORTING: "READY_FOR_CUTOVER"}

    # AND each target account holds the restored instances its tags send there, in their subnets and addresses
    first = restored_by_server(rehearsal.inventory, FIRST)
    second = restored_by_server(rehearsal.inventory, SECOND)
    assert sorted(first) == sorted([WEB, APP]) and sorted(second) == sorted([DB, INTRANET])
    assert (first[WEB]["subnet"], first[WEB]["privateIp"], first[WEB]["type"]) == (
        "subnet-0a1b2c3d4e5f60001", "10.20.1.41", "m5.large")
    assert (first[APP]["subnet"], first[APP]["privateIp"]) == ("subnet-0a1b2c3d4e5f60003", "10.20.3.42")
    assert (second[DB]["subnet"], second[DB]["privateIp"], second[DB]["type"]) == (
        "subnet-0b1c2d3e4f5a60002", "10.30.2.43", "r5.large")
    assert second[INTRANET]["subnet"] == "subnet-0b1c2d3e4f5a60002"

    # AND the request's defaults reached every restored instance: its tags, and the target's key on its volumes
    for instance in [*first.values(), *second.values()]:
        assert instance["tags"]["MigrationWave"] == "wave-3"
        assert instance["volumeKeys"] and "aws/ebs" not in instance["volumeKeys"]
    assert all(not account["kmsGrants"] for account in rehearsal.inventory["accounts"].values())


def test_a_wave_server_tagged_for_an_account_outside_the_allowlist_stops_the_wave_at_normalize():
    # GIVEN the same wave, its database server tagged for an account that exists but is not in the allowlist
    world = copy.deepcopy(WAVE_WORLD)
    world["servers"][DB]["tags"]["mgn-cutover:target-account"] = OUTSIDER
    allowlist = {"TargetAccountIds": f"{FIRST},{SECOND}"}

    with Sandbox(load_event("mgn-wave.json"), world, stack_parameters=allowlist) as sandbox:
        before = sandbox.world.inventory()

        # WHEN it is rehearsed
        rehearsal = sandbox.rehearse()
        invocations = list(sandbox.invocations)

    # THEN the execution fails in its first state, naming the account, and no server was touched in any account
    assert rehearsal.status == "FAILED"
    assert rehearsal.error == "TargetNotAllowed"
    assert OUTSIDER in json.dumps(rehearsal.cause)
    assert invocations == [("NormalizeRequestFunction", "Normalize Request")]
    assert rehearsal.inventory == before
    assert set(lifecycle_of(rehearsal.inventory).values()) == {"READY_FOR_CUTOVER"}
    assert not live_instances(rehearsal.inventory, MIGRATION_ACCOUNT)
