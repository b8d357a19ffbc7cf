"""Normalize Request: validate whichever entry point started the execution into one wave request."""

from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    # The request models (pydantic) load on the first request rather than at import: this function
    # runs once per wave, and its cold start is then no heavier than any other step's.
    from pipeline import entry

    return entry.normalize(event["input"], event["execution"])
