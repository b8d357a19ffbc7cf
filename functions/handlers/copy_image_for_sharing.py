"""Copy Image For Sharing: re-encrypt the image under the sharing key, unless it already is."""

from pipeline import images
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return images.copy_for_sharing(event)
