"""Share With Target: the image, its snapshots and the sharing key, with the target account only."""

from pipeline import images
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return images.share(event)
