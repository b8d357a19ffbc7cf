"""Roll Back: before finalize, remove everything the cutover created and ready the server again."""

from pipeline import teardown
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return teardown.roll_back(event)
