"""Finalize Cutover: the point of no return, reached only after the restored instance is verified."""

from pipeline import cutover
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return cutover.finalize(event)
