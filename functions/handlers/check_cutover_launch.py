"""Check Cutover Launch: one check of the MGN job, until the cutover instance is launched."""

from pipeline import cutover
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return cutover.check_launch(event)
