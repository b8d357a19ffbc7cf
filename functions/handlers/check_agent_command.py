"""Check Agent Command: one check of the CloudWatch agent command named by `command`."""

from pipeline import agent
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return agent.check(event["state"], event["command"])
