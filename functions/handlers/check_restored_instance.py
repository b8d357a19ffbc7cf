"""Check Restored Instance: one check, until it runs and passes both status checks."""

from pipeline import restore
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return restore.check(event)
