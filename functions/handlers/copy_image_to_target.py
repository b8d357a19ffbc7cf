"""Copy Image To Target: in the target account, copy the shared image under the target's key."""

from pipeline import images
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return images.copy_to_target(event)
