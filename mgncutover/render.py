"""How a wave's progress reads: a table with a progress bar, change lines, JSON lines."""

from __future__ import annotations

import json

from mgncutover.progress import Row, Wave

BAR_WIDTH = 30
_COLUMNS = ("source server", "step", "in step", "total", "outcome")
_WIDTHS = (21, 27, 9, 9, 26)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def table(wave: Wave, now: float) -> list[str]:
    """The whole picture: the execution, one row per server, the bar."""
    lines = [f"Execution {wave.execution}: {wave.status}"
             + (f" ({wave.error})" if wave.error else "")
             + (f", at {wave.step}" if not wave.finished and wave.step else "")
             + f", {duration(_span(wave, now))}",
             _line(_COLUMNS)]
    for row in wave.rows:
        outcome = row.outcome or ("running" if row.started else "waiting")
        lines.append(_line((row.server, row.step, duration(row.elapsed_in_step(now)), duration(row.elapsed(now)),
                            outcome)))
        if row.detail:
            lines.append(" " * _WIDTHS[0] + row.detail)
    lines.append(bar(wave))
    return lines


def bar(wave: Wave) -> str:
    total = wave.steps_total or 1
    filled = round(BAR_WIDTH * wave.steps_done / total)
    return (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {wave.servers_done}/{len(wave.rows)} servers done,"
            f" {wave.steps_done}/{wave.steps_total} steps")


def change_line(server: str, step: str, seconds: float, outcome: str | None = None, detail: str | None = None) -> str:
    """One line for a server that moved: when (since the execution began), where, and how it ended."""
    ended = f"  {outcome}" if outcome else ""
    more = f"  {detail}" if detail else ""
    return f"[{duration(seconds):>7}] {server:<21}{step:<27}{ended}{more}".rstrip()


def json_line(kind: str, body: dict) -> str:
    return json.dumps({"event": kind, **body}, sort_keys=False)


def _line(cells: tuple[str, ...]) -> str:
    return "".join(f"{cell:<{width}}" for cell, width in zip(cells, _WIDTHS)).rstrip()


def _span(wave: Wave, now: float) -> float | None:
    return None if wave.started is None else max(0.0, (wave.ended or now) - wave.started)
