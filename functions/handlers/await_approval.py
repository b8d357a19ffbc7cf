"""Await Approval: record the server's task token at the approval gate; notify once the wave is ready."""

from pipeline import approval
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return approval.arrive(event["state"], event["token"])
