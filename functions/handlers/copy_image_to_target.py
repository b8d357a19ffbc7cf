"""Copy Image To Target: in the target account, copy the shared image under the target's key.

Start Target Copy runs it again after the agent steps, for a copy that found no free slot before the
launch; it passes the server's state under `state`.
"""

from pipeline import images
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return images.copy_to_target(event["state"] if isinstance(event.get("state"), dict) else event)
