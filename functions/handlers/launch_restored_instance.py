"""Launch Restored Instance: in the target account, with the requested placement."""

from pipeline import restore
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return restore.launch(event)
