"""Check Managed Instance: one check, until the restored instance is online in SSM."""

from pipeline import agent
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return agent.check_managed(event)
