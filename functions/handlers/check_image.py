"""Check Image: one check of an image being created or copied (which one: `slot`)."""

from pipeline import images
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return images.check(event["state"], event["slot"])
