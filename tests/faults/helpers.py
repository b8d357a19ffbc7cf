"""A one-server wave that rehearses fast (on simulated time, with checks to spare), for runs repeated once per
fault."""

from __future__ import annotations

import copy

from tests.rehearsal.helpers import load_event

TARGET_ACCOUNT = "222222222222"


def one_server_request() -> dict:
    request = copy.deepcopy(load_event("console-wave.json"))
    request["servers"] = request["servers"][:1]
    request["options"].update({"pollIntervalSeconds": 30, "maxPollAttempts": 60})
    return request


def server_id() -> str:
    return one_server_request()["servers"][0]["sourceServerId"]


def servers_of(rehearsal_json: dict) -> list[dict]:
    for source in (rehearsal_json.get("output"), rehearsal_json.get("cause")):
        if isinstance(source, dict) and isinstance(source.get("servers"), list):
            return source["servers"]
    return []
