"""Following an execution to its end, showing each server's progress as it changes."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from mgncutover import render
from mgncutover.history import HistoryReader
from mgncutover.progress import PENDING, Row, Wave, wave_progress

TTY, PLAIN, JSON = "tty", "plain", "json"
# ANSI: move the cursor to the start of the line N lines up, then clear to the end of the screen.
_UP = "\x1b[{}F"
_CLEAR = "\x1b[J"


@dataclass
class Watch:
    """One watch of one execution; `poll` reads, shows what changed and returns the wave."""

    sfn: Any
    execution_arn: str
    out: IO[str] = sys.stdout
    mode: str = PLAIN
    clock: Callable[[], float] = time.time
    reader: HistoryReader = field(init=False)
    _since: float = field(init=False)
    _shown: dict = field(init=False, default_factory=dict)
    _wave_key: tuple | None = field(init=False, default=None)
    _drawn: int = field(init=False, default=0)
    _pending: list = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.reader = HistoryReader(self.sfn)
        self._since = self.clock()

    def poll(self) -> Wave:
        snapshot = self.reader.read(self.execution_arn)
        described = snapshot.described
        wave = wave_progress(described.get("name") or self.execution_arn.rsplit(":", 1)[1], snapshot.parent,
                             snapshot.children, status=described["status"], request=described.get("input"))
        self._show(wave)
        return wave

    def finish(self, wave: Wave) -> None:
        """The final picture: the table (plain, TTY) or the wave as one JSON object."""
        now = self.clock()
        if self.mode == JSON:
            self._write(render.json_line("wave", wave.as_json(now)))
        elif self.mode == PLAIN:
            self._write("")
            for line in render.table(wave, now):
                self._write(line)
        self.out.flush()

    def _show(self, wave: Wave) -> None:
        now = self.clock()
        if self.mode == TTY:
            lines = render.table(wave, now)
            if self._drawn:
                self.out.write(_UP.format(self._drawn) + _CLEAR)
            self.out.write("\n".join(lines) + "\n")
            self._drawn = len(lines)
            self.out.flush()
            return
        # Times are counted from the execution's start, by the events' own clock.
        origin = wave.started or self._since
        wave_key = (wave.step, wave.status)
        if wave_key != self._wave_key and wave.step != PENDING:
            self._wave_key = wave_key
            if self.mode == JSON:
                self._write(render.json_line("execution", {"execution": wave.execution, "status": wave.status,
                                                           "step": wave.step}))
            else:
                self._write(render.change_line("wave", wave.step, now - origin, wave.status))
        self._pending: list[tuple[float, str]] = []
        for row in wave.rows:
            self._show_row(wave, row, origin, now)
        # What happened since the last poll, in the order it happened (stable for equal times).
        for _, line in sorted(self._pending, key=lambda item: item[0]):
            self._write(line)
        self.out.flush()

    def _show_row(self, wave: Wave, row: Row, origin: float, now: float) -> None:
        shown = self._shown.setdefault(row.server, {"steps": 0, "listed": False, "ended": False})
        if not row.path and not shown["listed"]:
            self._change(wave, row, row.step, now - origin, None, None, now)
        shown["listed"] = True
        for step, at in row.path[shown["steps"]:]:
            self._change(wave, row, step, (at or now) - origin, None, None, now)
        shown["steps"] = len(row.path)
        if row.outcome and not shown["ended"]:
            shown["ended"] = True
            self._change(wave, row, row.step, (row.ended or now) - origin, row.outcome, row.detail, now)

    def _change(self, wave: Wave, row: Row, step: str, seconds: float, outcome: str | None, detail: str | None,
                now: float) -> None:
        seconds = max(0.0, seconds)
        if self.mode == JSON:
            body = {"execution": wave.execution, "server": row.server, "step": step, "outcome": outcome,
                    "detail": detail, "secondsSinceStart": round(seconds, 1)}
            if outcome:
                body.update(row.as_json(now))
            self._pending.append((seconds, render.json_line("server", body)))
        else:
            self._pending.append((seconds, render.change_line(row.server, step, seconds, outcome, detail)))

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")


def follow(watch: Watch, interval: float, timeout: float, on_poll: Callable[[Wave], None] | None = None,
           follow_to_end: bool = True, sleep: Callable[[float], None] = time.sleep) -> Wave:
    """Poll until the execution ends (or once, without `follow_to_end`), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    wave = watch.poll()
    while follow_to_end and not wave.finished and time.monotonic() < deadline:
        if on_poll is not None:
            on_poll(wave)
        sleep(interval)
        wave = watch.poll()
    watch.finish(wave)
    return wave
