"""The per-server ledger in DynamoDB: claims, and the artifacts rollback and cleanup read."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from pipeline import ledger
from pipeline.errors import ServerClaimed
from tests.unit.support import EXECUTION, OTHER_EXECUTION, OTHER_SOURCE_SERVER_ID, SOURCE_SERVER_ID, WAVE


def test_claim_writes_the_holder_into_the_table(ledger_table, ledger_item):
    # GIVEN a source server nobody holds
    # WHEN an execution claims it
    artifacts = ledger.claim(SOURCE_SERVER_ID, EXECUTION, WAVE)

    # THEN the item names the execution as holder, and there is nothing to pick up yet
    item = ledger_item()
    assert item["holder"] == {"S": EXECUTION}
    assert item["claimStatus"] == {"S": "CLAIMED"}
    assert item["wave"] == {"S": WAVE}
    assert int(item["claimedAt"]["N"]) > 0
    assert artifacts == {}
    assert ledger.holder(SOURCE_SERVER_ID) == EXECUTION


def test_reclaim_by_the_same_execution_returns_what_it_recorded(claimed_server, ledger_item):
    # GIVEN the execution holds the server and recorded an image
    ledger.record(claimed_server, EXECUTION, "image", "ami-0123456789abcdef0")

    # WHEN the claim step is retried by the same execution
    artifacts = ledger.claim(claimed_server, EXECUTION, WAVE)

    # THEN the claim stands and the recorded image is handed back
    assert artifacts == {"image": "ami-0123456789abcdef0"}
    assert ledger_item()["holder"] == {"S": EXECUTION}


def test_claim_by_another_execution_is_refused_naming_the_holder(claimed_server, ledger_item):
    # GIVEN one execution holds the server
    # WHEN a second execution claims it
    with pytest.raises(ServerClaimed) as refused:
        ledger.claim(claimed_server, OTHER_EXECUTION, "wave-2")

    # THEN it is refused naming the holder, and the item is unchanged
    assert refused.value.holder == EXECUTION
    assert EXECUTION in str(refused.value) and claimed_server in str(refused.value)
    assert ledger_item()["holder"] == {"S": EXECUTION}
    assert ledger_item()["wave"] == {"S": WAVE}


def test_claim_after_release_goes_to_the_new_execution(claimed_server, ledger_item):
    # GIVEN the holder released the server
    ledger.release(claimed_server, EXECUTION, "ROLLED_BACK")

    # WHEN another execution claims it
    ledger.claim(claimed_server, OTHER_EXECUTION, "wave-2")

    # THEN the new execution holds it
    assert ledger_item()["holder"] == {"S": OTHER_EXECUTION}
    assert ledger_item()["claimStatus"] == {"S": "CLAIMED"}
    assert ledger.holder(claimed_server) == OTHER_EXECUTION


def test_claims_of_two_servers_are_independent(claimed_server):
    # GIVEN one server held by one execution
    # WHEN another execution claims a different server
    ledger.claim(OTHER_SOURCE_SERVER_ID, OTHER_EXECUTION, WAVE)

    # THEN each server has its own holder
    assert ledger.holder(claimed_server) == EXECUTION
    assert ledger.holder(OTHER_SOURCE_SERVER_ID) == OTHER_EXECUTION


def test_record_and_forget_artifacts(claimed_server, ledger_item):
    # GIVEN the holder recorded three artifacts
    ledger.record(claimed_server, EXECUTION, "image", "ami-0123456789abcdef0")
    ledger.record(claimed_server, EXECUTION, "grant", "grant-1")
    ledger.record(claimed_server, EXECUTION, "sharedWith", "222222222222")

    # WHEN two of them are forgotten
    ledger.forget(claimed_server, EXECUTION, "grant", "sharedWith")

    # THEN the table keeps only the image
    assert ledger_item()["artifacts"] == {"M": {"image": {"S": "ami-0123456789abcdef0"}}}
    assert ledger.read(claimed_server)["artifacts"] == {"image": "ami-0123456789abcdef0"}


def test_recording_again_overwrites_the_value(claimed_server):
    # GIVEN an artifact recorded once
    ledger.record(claimed_server, EXECUTION, "image", "ami-00000000000000001")

    # WHEN it is recorded again with a new value
    ledger.record(claimed_server, EXECUTION, "image", "ami-00000000000000002")

    # THEN the latest value is the one held
    assert ledger.read(claimed_server)["artifacts"] == {"image": "ami-00000000000000002"}


def test_forget_of_nothing_changes_nothing(claimed_server, ledger_item):
    # GIVEN a recorded artifact
    ledger.record(claimed_server, EXECUTION, "image", "ami-0123456789abcdef0")
    before = ledger_item()

    # WHEN forget is called with no names
    ledger.forget(claimed_server, EXECUTION)

    # THEN the item is as it was
    assert ledger_item() == before


def test_record_by_a_non_holder_is_refused(claimed_server):
    # GIVEN the server is held by one execution
    # WHEN another execution records an artifact
    with pytest.raises(ClientError) as refused:
        ledger.record(claimed_server, OTHER_EXECUTION, "image", "ami-0123456789abcdef0")

    # THEN DynamoDB refuses the write and no artifact is stored
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert ledger.read(claimed_server)["artifacts"] == {}


def test_record_for_an_unclaimed_server_is_refused(ledger_table):
    # GIVEN nobody ever claimed the server
    # WHEN an execution records an artifact
    with pytest.raises(ClientError) as refused:
        ledger.record(SOURCE_SERVER_ID, EXECUTION, "image", "ami-0123456789abcdef0")

    # THEN the write is refused, and the server is still free to claim
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert ledger.holder(SOURCE_SERVER_ID) is None
    assert ledger.claim(SOURCE_SERVER_ID, OTHER_EXECUTION, WAVE) == {}


def test_forget_by_a_non_holder_is_refused(claimed_server):
    # GIVEN an artifact recorded by the holder
    ledger.record(claimed_server, EXECUTION, "image", "ami-0123456789abcdef0")

    # WHEN another execution tries to forget it
    with pytest.raises(ClientError):
        ledger.forget(claimed_server, OTHER_EXECUTION, "image")

    # THEN it is still recorded
    assert ledger.read(claimed_server)["artifacts"] == {"image": "ami-0123456789abcdef0"}


def test_release_marks_the_outcome_and_is_idempotent(claimed_server, ledger_item):
    # GIVEN the holder
    # WHEN it releases the server twice
    ledger.release(claimed_server, EXECUTION, "CUT_OVER")
    ledger.release(claimed_server, EXECUTION, "CUT_OVER")

    # THEN the item says released, with the outcome, and no one holds the server
    item = ledger_item()
    assert item["claimStatus"] == {"S": "RELEASED"}
    assert item["outcome"] == {"S": "CUT_OVER"}
    assert "releasedAt" in item
    assert ledger.holder(claimed_server) is None


def test_release_by_a_non_holder_leaves_the_claim(claimed_server, ledger_item):
    # GIVEN the server is held by one execution
    # WHEN another execution releases it
    ledger.release(claimed_server, OTHER_EXECUTION, "ROLLED_BACK")

    # THEN nothing changes: the holder still holds it
    assert ledger_item()["claimStatus"] == {"S": "CLAIMED"}
    assert "outcome" not in ledger_item()
    assert ledger.holder(claimed_server) == EXECUTION


def test_release_of_an_unknown_server_creates_nothing(ledger_table, ledger_item):
    # GIVEN no item for the server
    # WHEN it is released
    ledger.release(SOURCE_SERVER_ID, EXECUTION, "REFUSED")

    # THEN the table still has no item for it
    assert ledger_item() is None


def test_read_of_an_unknown_server_is_none(ledger_table):
    # GIVEN no item / WHEN read / THEN there is neither item nor holder
    assert ledger.read(SOURCE_SERVER_ID) is None
    assert ledger.holder(SOURCE_SERVER_ID) is None


def test_a_missing_table_setting_fails_loudly(ledger_table, monkeypatch):
    # GIVEN a function deployed without its LEDGER_TABLE
    monkeypatch.delenv("LEDGER_TABLE")

    # WHEN / THEN the claim fails naming the setting, rather than acting on a default table
    from pipeline.config import MissingSetting

    with pytest.raises(MissingSetting, match="LEDGER_TABLE"):
        ledger.claim(SOURCE_SERVER_ID, EXECUTION, WAVE)
