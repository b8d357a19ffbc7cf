"""Release Server: release the claim and report the server's outcome."""

from pipeline import wave
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return wave.release(event)
