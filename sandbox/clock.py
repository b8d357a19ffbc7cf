"""Simulated time for a rehearsal: waits advance a clock instead of sleeping.

A rehearsal runs several servers at once (the Distributed Map runs each iteration in a thread), so the clock
is a discrete-event one. Every live map iteration either runs (real work, no simulated time passes) or
sleeps in a simulated wait: a Wait state, a retry interval, the duration of a Lambda invocation. Time moves
only when every live iteration sleeps, and then straight to the earliest wake-up; sleepers due at the same
moment wake together. A sleep outside any iteration (Normalize Request, Summarize Wave, a single `invoke`)
counts as a participant of its own, so with no iteration live it advances at once.

A thread blocked on a lock is not sleeping: the holder of the lock runs, so it never stops the clock for
good. Waiting in a simulated sleep while holding a lock another iteration needs would (it is never done).

The AWS rules and the MGN simulator note here when each operation they model starts and ends
(`record`), for the report's critical path.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

# Simulated time starts at a fixed moment (2026-01-01T00:00:00Z), so a rehearsal is the same every run.
EPOCH = 1_767_225_600.0

# The server an AWS call is made for: the sandbox sets it around each handler it runs.
current_server: contextvars.ContextVar[str | None] = contextvars.ContextVar("sandbox_server", default=None)


@dataclass(frozen=True)
class Operation:
    """One AWS operation the world modelled: who it was for, and when it ran in simulated seconds."""

    server: str | None
    name: str
    start: float
    end: float
    full_copy: bool = False

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def as_json(self, epoch: float) -> dict:
        described = asdict(self)
        described.update(start=round(self.start - epoch, 3), end=round(self.end - epoch, 3),
                         seconds=round(self.seconds, 3))
        return described


class _Sleeper:
    __slots__ = ("wake", "order", "woken")

    def __init__(self, wake: float, order: int):
        self.wake, self.order, self.woken = wake, order, False

    def __lt__(self, other: _Sleeper) -> bool:
        return (self.wake, self.order) < (other.wake, other.order)


class Clock:
    """A discrete-event clock shared by every thread of a rehearsal."""

    def __init__(self, start: float = EPOCH):
        self.start = start
        self._now = start
        self._condition = threading.Condition()
        self._live = 0
        self._outside_sleepers = 0
        self._sleepers: list[_Sleeper] = []
        self._order = itertools.count()
        self._in_iteration = threading.local()
        self.operations: list[Operation] = []

    def now(self) -> float:
        with self._condition:
            return self._now

    def elapsed(self) -> float:
        """Simulated seconds since the clock started."""
        return self.now() - self.start

    # --- participants ----------------------------------------------------------------------------------

    @property
    def live(self) -> int:
        with self._condition:
            return self._live

    @property
    def sleeping(self) -> int:
        with self._condition:
            return len(self._sleepers)

    def iteration_started(self) -> None:
        """A map iteration is about to run: counted before its thread starts, so no sleeper outruns it."""
        with self._condition:
            self._live += 1

    def iteration_ended(self) -> None:
        with self._condition:
            self._live -= 1
            self._advance_if_all_asleep()

    @contextmanager
    def iteration(self) -> Iterator[None]:
        """Run the body as one live iteration, in this thread (the iteration must be counted started)."""
        self._in_iteration.active = True
        try:
            yield
        finally:
            self._in_iteration.active = False
            self.iteration_ended()

    def in_iteration(self) -> bool:
        """Whether the calling thread works for a live iteration."""
        return getattr(self._in_iteration, "active", False)

    @contextmanager
    def on_behalf(self, in_iteration: bool) -> Iterator[None]:
        """Run the body in a helper thread as part of the thread that started it (its iteration, or none)."""
        previous = self.in_iteration()
        self._in_iteration.active = in_iteration
        try:
            yield
        finally:
            self._in_iteration.active = previous

    @contextmanager
    def not_live(self) -> Iterator[None]:
        """The calling iteration blocks on work of other iterations (a nested map): it stops counting."""
        inside = self.in_iteration()
        if inside:
            self.iteration_ended()
        try:
            yield
        finally:
            if inside:
                self.iteration_started()

    # --- waiting ---------------------------------------------------------------------------------------

    def sleep(self, seconds: float) -> float:
        """Block until `seconds` of simulated time have passed; returns the simulated time it woke at.

        NOTE: a thread outside every iteration is a participant only while it sleeps: once woken, time may
        move on while it still runs. Outside the map only one execution's own steps run, so none notices.
        """
        outside = not self.in_iteration()
        with self._condition:
            sleeper = _Sleeper(self._now + max(0.0, float(seconds)), next(self._order))
            heapq.heappush(self._sleepers, sleeper)
            if outside:
                self._outside_sleepers += 1
            self._advance_if_all_asleep()
            while not sleeper.woken:
                self._condition.wait()
            if outside:
                # No longer a participant: the others may be all asleep now.
                self._outside_sleepers -= 1
                self._advance_if_all_asleep()
            return sleeper.wake

    def _advance_if_all_asleep(self) -> None:
        # Called with the condition held. A woken sleeper leaves the heap at once but keeps counting as a
        # participant until its thread runs again, so time cannot move past it in the meantime.
        if not self._sleepers or len(self._sleepers) < self._live + self._outside_sleepers:
            return
        wake = self._sleepers[0].wake
        self._now = max(self._now, wake)
        while self._sleepers and self._sleepers[0].wake == wake:
            heapq.heappop(self._sleepers).woken = True
        self._condition.notify_all()

    # --- what happened ---------------------------------------------------------------------------------

    def record(self, server: str | None, operation: str, start: float, end: float, full_copy: bool = False) -> None:
        """Note an AWS operation the world modelled, from `start` to `end` in simulated time."""
        with self._condition:
            self.operations.append(Operation(server, operation, start, end, full_copy))

    def operations_of(self, server: str | None) -> list[Operation]:
        with self._condition:
            return sorted((op for op in self.operations if op.server == server), key=lambda op: (op.start, op.end))


_active = Clock()


def active() -> Clock:
    """The clock of the world being simulated (a fresh one for each world)."""
    return _active


def install(clock: Clock) -> Clock:
    global _active
    _active = clock
    return clock


def now() -> float:
    return _active.now()


def record(operation: str, start: float, end: float, full_copy: bool = False) -> None:
    """Note an operation for the server whose handler is running (none outside one)."""
    _active.record(current_server.get(), operation, start, end, full_copy)
