"""Summarize Wave: the per-server report of the wave, published to the notification topic."""

from pipeline import wave
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return wave.summarize(event["wave"], event["execution"], event["results"])
