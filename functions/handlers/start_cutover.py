"""Start Cutover: start the MGN cutover job for the source server."""

from pipeline import cutover
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return cutover.start(event)
