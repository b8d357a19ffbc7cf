"""Claim Server: hold the source server for this execution, so no other one cuts it over."""

from pipeline import ledger
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    artifacts = ledger.claim(event["server"]["sourceServerId"], event["execution"], event["wave"])
    return {"claimed": True, "artifacts": artifacts}
