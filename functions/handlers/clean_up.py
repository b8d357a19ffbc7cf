"""Clean Up: take back the sharing and remove the migration account's intermediates."""

from pipeline import teardown
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return teardown.clean_up(event)
