"""Create Image: the AMI of the cutover instance."""

from pipeline import images
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return images.create(event)
