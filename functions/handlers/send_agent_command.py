"""Install Agent / Configure Agent: send the CloudWatch agent command named by `command`."""

from pipeline import agent
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return agent.send(event["state"], event["command"])
