"""Summarize Wave: the per-server report of the wave (or of its preflight), published to the notification topic."""

from pipeline import preflight, wave
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    if event.get("mode") == "preflight":
        return preflight.summarize(event["wave"], event["execution"], event["results"])
    return wave.summarize(event["wave"], event["execution"], event["results"])
