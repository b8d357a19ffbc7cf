"""The source servers of an MGN wave or application, for a request that names one instead of listing servers.

MGN groups source servers into applications and applications into waves. A request naming a wave takes the
servers of each of its applications that is not archived; naming an application takes that application's
servers. Archived source servers are never taken. Every list is read to its end through MGN's paging, and
reading stops as soon as the servers are more than one request may hold.

NOTE: only the migration account's own waves are read (no `accountID`): with MGN global view a wave can hold
servers of other accounts, whose cutovers this pipeline's MGN calls could not start anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline import aws
from pipeline.errors import MgnSelectionArchived, MgnSelectionEmpty, MgnSelectionNotFound, RequestInvalid, WaveTooLarge
from pipeline.observability import logger
from pipeline.request import MGN_APPLICATION_ID, MGN_WAVE_ID, MgnRequest, max_servers

# DescribeSourceServers takes at most this many application ids in one filter.
_FILTER_IDS = 200


@dataclass(frozen=True)
class Selection:
    """What a request's `mgnWave` or `mgnApplication` named, and the source servers MGN holds in it."""

    field: str
    kind: str
    id: str
    name: str
    servers: list[dict]

    @property
    def label(self) -> str:
        return f"MGN {self.kind} {self.name!r} ({self.id})"


def select(request: MgnRequest) -> Selection:
    """The wave or application the request names, with its live source servers; a named error otherwise."""
    if request.mgn_wave is not None:
        wave = _find("wave", "mgnWave", request.mgn_wave, "list_waves", "waveID", MGN_WAVE_ID)
        applications = list(_items("list_applications", filters={"waveIDs": [wave["waveID"]], "isArchived": False}))
        found = Selection("mgnWave", "wave", wave["waveID"], wave["name"], [])
        if not applications:
            raise MgnSelectionEmpty(found.field, f"{found.label} holds no application that is not archived")
    else:
        application = _find("application", "mgnApplication", request.mgn_application, "list_applications",
                            "applicationID", MGN_APPLICATION_ID)
        applications = [application]
        found = Selection("mgnApplication", "application", application["applicationID"], application["name"], [])

    servers = _servers_of(found, [application["applicationID"] for application in applications])
    logger.info("MGN servers selected", mgn_kind=found.kind, mgn_id=found.id, applications=len(applications),
                servers=len(servers))
    return Selection(found.field, found.kind, found.id, found.name, servers)


def _find(kind: str, field: str, wanted: str, operation: str, id_key: str, id_pattern: str) -> dict:
    # An id is looked up by id; a name (or an id MGN does not hold) by reading every wave or application.
    matches = list(_items(operation, filters={f"{id_key}s": [wanted]})) if re.fullmatch(id_pattern, wanted) else []
    if not matches:
        matches = [item for item in _items(operation) if item.get("name") == wanted]
    if not matches:
        raise MgnSelectionNotFound(field, f"MGN holds no {kind} named or with id {wanted!r} in this account and region")
    if len(matches) > 1:
        ids = ", ".join(item[id_key] for item in matches)
        raise RequestInvalid(field, f"{len(matches)} MGN {kind}s are named {wanted!r} ({ids}); name one by its id")
    found = matches[0]
    if found.get("isArchived"):
        raise MgnSelectionArchived(field, f"MGN {kind} {found.get('name')!r} ({found[id_key]}) is archived")
    return found


def _servers_of(found: Selection, application_ids: list[str]) -> list[dict]:
    limit = max_servers()
    servers: dict[str, dict] = {}
    for start in range(0, len(application_ids), _FILTER_IDS):
        chunk = application_ids[start:start + _FILTER_IDS]
        for server in _items("describe_source_servers", filters={"applicationIDs": chunk, "isArchived": False}):
            servers.setdefault(server["sourceServerID"], server)
            if len(servers) > limit:
                raise WaveTooLarge(found.field, f"{found.label} holds more than {limit} source servers, the most one "
                                                "request may hold; split it into smaller waves")
    if not servers:
        raise MgnSelectionEmpty(found.field, f"{found.label} holds no source server that is not archived")
    return list(servers.values())


def _items(operation: str, **params) -> Iterator[dict]:
    for page in aws.client("mgn").get_paginator(operation).paginate(**params):
        yield from page.get("items", [])
