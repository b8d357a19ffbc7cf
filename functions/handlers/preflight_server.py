"""Preflight Server: read-only checks of everything one server's cutover needs; changes nothing."""

from pipeline import preflight
from pipeline.observability import step


@step
def handler(event: dict, context) -> dict:
    return preflight.run_server(event)
