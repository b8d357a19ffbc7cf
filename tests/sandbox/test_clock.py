"""The rehearsal's simulated clock on its own: sleepers, live iterations, ties, determinism, no deadlock."""

from __future__ import annotations

import threading

from sandbox.clock import Clock

# Real seconds a test thread may take; a thread still alive after it means the clock is stuck.
JOIN_SECONDS = 10


def run_iterations(clock: Clock, bodies: list) -> None:
    """Run each body as one live map iteration in its own thread, counted before any starts, as the sandbox does."""
    threads = []
    for body in bodies:
        clock.iteration_started()
        threads.append(threading.Thread(target=_counted, args=(clock, body), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "an iteration is stuck: the clock deadlocked"


def _counted(clock: Clock, body) -> None:
    with clock.iteration():
        body()


def test_a_sleep_outside_any_iteration_advances_at_once():
    # GIVEN a clock with no live iteration (Normalize Request, a single invoke)
    clock = Clock(start=1000.0)

    # WHEN it sleeps 90 s
    clock.sleep(90)

    # THEN the simulated time moved by exactly that much, at once
    assert clock.now() == 1090.0 and clock.elapsed() == 90.0


def test_time_waits_for_every_live_iteration_then_jumps_to_the_earliest_wake_up():
    # GIVEN two iterations: one sleeps 100 s; the other works (no simulated time) and then sleeps 30 s
    clock = Clock(start=0.0)
    seen: dict[str, float] = {}
    other_working = threading.Event()

    def long_sleeper():
        other_working.wait(JOIN_SECONDS)
        clock.sleep(100)
        seen["long"] = clock.now()

    def worker():
        # While this iteration runs, the long sleeper is asleep and time must not move.
        other_working.set()
        seen["while working"] = clock.now()
        clock.sleep(30)
        seen["short"] = clock.now()

    # WHEN both run
    run_iterations(clock, [long_sleeper, worker])

    # THEN time stood still while one ran, went first to the earlier wake-up, then to the later one
    assert seen == {"while working": 0.0, "short": 30.0, "long": 100.0}


def test_sleepers_due_at_the_same_moment_wake_together():
    # GIVEN three iterations that each sleep 60 s, then note the time, then sleep 10 s more
    clock = Clock(start=0.0)
    woke: list[float] = []
    lock = threading.Lock()

    def body():
        clock.sleep(60)
        with lock:
            woke.append(clock.now())
        clock.sleep(10)

    # WHEN they run
    run_iterations(clock, [body, body, body])

    # THEN all three woke at 60 s (one step of the clock, not three), and the wave ended at 70 s
    assert woke == [60.0, 60.0, 60.0]
    assert clock.elapsed() == 70.0


def test_an_iteration_that_ends_lets_the_others_time_move():
    # GIVEN one iteration that sleeps and one that ends without sleeping
    clock = Clock(start=0.0)
    woke: list[float] = []

    # WHEN they run / THEN the sleeper is woken once the other has ended, at its own wake-up
    run_iterations(clock, [lambda: (clock.sleep(45), woke.append(clock.now())), lambda: None])
    assert woke == [45.0] and clock.live == 0


def test_the_same_sleeps_give_the_same_times_every_run():
    # GIVEN iterations of different sleep sequences, run five times on fresh clocks
    def timeline() -> list[tuple[str, float]]:
        clock = Clock(start=0.0)
        events: list[tuple[str, float]] = []
        lock = threading.Lock()

        def body(name: str, sleeps: list[float]):
            def run():
                for seconds in sleeps:
                    clock.sleep(seconds)
                    with lock:
                        events.append((name, clock.now()))
            return run

        run_iterations(clock, [body("a", [30, 30, 30]), body("b", [45, 1.5, 60]), body("c", [90])])
        return sorted(events)

    # WHEN / THEN every run gives the same simulated times
    runs = [timeline() for _ in range(5)]
    assert all(run == runs[0] for run in runs)
    assert runs[0] == [("a", 30.0), ("a", 60.0), ("a", 90.0), ("b", 45.0), ("b", 46.5), ("b", 106.5), ("c", 90.0)]


def test_two_iterations_sharing_a_lock_do_not_deadlock():
    # GIVEN two iterations that take turns on one lock (the sandbox's one-handler-at-a-time lock) and
    # sleep after releasing it, as a Lambda invocation's duration passes after its handler
    clock = Clock(start=0.0)
    handler_lock = threading.Lock()
    calls: list[tuple[str, float]] = []

    def body(name: str):
        def run():
            for _ in range(3):
                with handler_lock:
                    calls.append((name, clock.now()))
                clock.sleep(0.3)
        return run

    # WHEN they run (one waits on the lock while the other holds it: not a simulated wait)
    run_iterations(clock, [body("first"), body("second")])

    # THEN both finished, each call at the moment its iteration reached it
    assert sorted(calls) == [("first", 0.0), ("first", 0.3), ("first", 0.6),
                             ("second", 0.0), ("second", 0.3), ("second", 0.6)]


def test_a_sleep_outside_the_iterations_joins_their_turn():
    # GIVEN an iteration counted live, and outside any iteration a thread already asleep for 20 s
    clock = Clock(start=0.0)
    woke: dict[str, float] = {}
    clock.iteration_started()
    outside = threading.Thread(target=lambda: woke.setdefault("outside", clock.sleep(20)), daemon=True)
    outside.start()
    for _ in range(1000):
        if clock.sleeping:
            break
        threading.Event().wait(0.01)
    # (the iteration has not slept yet, so time has not moved for the outside sleeper)
    assert clock.sleeping == 1 and clock.now() == 0.0

    # WHEN the iteration runs and sleeps 50 s
    def iteration():
        with clock.iteration():
            clock.sleep(50)
            woke["iteration"] = clock.now()

    thread = threading.Thread(target=iteration, daemon=True)
    thread.start()
    for running in (thread, outside):
        running.join(JOIN_SECONDS)

    # THEN the outside sleeper woke first, at its own time, and the iteration after it
    assert not thread.is_alive() and not outside.is_alive()
    assert woke == {"outside": 20.0, "iteration": 50.0}


def test_operations_are_recorded_per_server_in_order():
    # GIVEN a clock on which the world records two operations of one server and one of another
    clock = Clock(start=0.0)
    clock.record("s-2", "CopyImage", 100.0, 400.0, full_copy=True)
    clock.record("s-1", "CreateImage", 10.0, 90.0, full_copy=True)
    clock.record("s-2", "CreateImage", 10.0, 95.0, full_copy=True)

    # WHEN / THEN each server's operations come back in the order they started
    assert [(op.name, op.seconds) for op in clock.operations_of("s-2")] == [("CreateImage", 85.0), ("CopyImage", 300.0)]
    assert clock.operations_of("s-2")[1].as_json(0.0) == {"server": "s-2", "name": "CopyImage", "start": 100.0,
                                                          "end": 400.0, "full_copy": True, "seconds": 300.0}


def test_a_helper_thread_sleeps_as_part_of_the_iteration_that_started_it():
    # GIVEN two iterations; one runs its work in a helper thread and waits for it (as moto runs each Task),
    # the helper sleeping 40 s on the iteration's behalf; the other sleeps 100 s
    clock = Clock(start=0.0)
    woke: dict[str, float] = {}

    def with_helper():
        in_iteration = clock.in_iteration()

        def helper():
            with clock.on_behalf(in_iteration):
                woke["helper"] = clock.sleep(40)

        thread = threading.Thread(target=helper, daemon=True)
        thread.start()
        thread.join(JOIN_SECONDS)

    # WHEN both run
    run_iterations(clock, [with_helper, lambda: woke.setdefault("other", clock.sleep(100))])

    # THEN the helper's sleep counted for its iteration: time went to 40 s, then to 100 s, and nothing stuck
    assert woke == {"helper": 40.0, "other": 100.0}
