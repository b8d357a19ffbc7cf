"""Normalize Request: validate whichever entry point started the execution into one wave request."""

from pipeline import entry
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return entry.normalize(event["input"], event["execution"])
