"""The wave benchmark: what one wave costs, per server, on the direct path, the direct path with a
re-encrypting copy, and the classic one.

    python -m sandbox benchmark [--sizes 1,10,100,500] [--paths direct,classic] [--json] [--markdown FILE]
    python -m sandbox benchmark --imports          # the cold-start import figures (sandbox/benchmark.py)

Each (wave size, path) is one rehearsal of a generated wave, in a fresh process: servers spread over three
target accounts, one 100 GiB disk each, ids that are the same every run. The two paths:

- direct: the server replicates under the pipeline's sharing key (no re-encrypting copy) and the restored
  instance launches straight from the shared image (`restoreFrom: "sharedImage"`); the target's own copy
  comes after finalize.
- reencrypt: the server replicates under the default EBS key, so the image is first copied under the sharing
  key; the restored instance still launches straight from the shared image: two full copies before finalize.
- classic: the server replicates under the default EBS key, so the image is first copied under the sharing
  key, and the restored instance launches from the target's own copy (`restoreFrom: "targetImage"`): three
  full copies (the image, the re-encrypting copy, the target's copy) before the server is finalized.

The counters do not depend on the pipeline's own bookkeeping: state transitions are the interpreter's
state-entered history events plus its retries (what AWS bills), AWS API calls are counted by a botocore
`before-call` hook on every call a handler makes (by service and operation), Lambda invocations are the
sandbox's own list of them. Simulated figures (downtime, full copies, GB-seconds) come from the rehearsal's
simulated clock (sandbox/clock.py); the wall time is this machine's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import botocore.handlers

from sandbox import iam
from sandbox import template as cfn

SIZES = (1, 10, 100, 500)
PATHS = ("direct", "reencrypt", "classic")
TARGET_ACCOUNTS = ("222222222222", "333333333333", "444444444444")
DISK_GIB = 100
# One subnet holds this many of an account's servers (a /24 has 251 usable addresses; the first ten are kept).
SERVERS_PER_SUBNET = 200
# Lambda's default memory, for a function that names none and a template whose Globals name none.
LAMBDA_DEFAULT_MEMORY_MB = 128
# The end of a server's downtime: a full copy that ends before it starts is one the cutover waited for.
FINALIZE_STATE = "Finalize Cutover"
UNAVAILABLE = "n/a"
# A wave still running after this many real seconds a server is stuck (about ten times what one takes on a
# busy machine); never less than the sandbox's own bound.
REAL_SECONDS_PER_SERVER = 30


# --- the generated wave ----------------------------------------------------------------------------------------


def generated_wave(size: int, path: str) -> tuple[dict, dict]:
    """The request and world of a wave of `size` servers on `path`; the same every run."""
    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(PATHS)}, not {path!r}")
    if not 1 <= size <= 500:
        raise ValueError(f"size must be 1 to 500 servers, not {size}")
    servers = []
    for index in range(size):
        account_index, within = index % len(TARGET_ACCOUNTS), index // len(TARGET_ACCOUNTS)
        network, subnet = 20 + 10 * account_index, within // SERVERS_PER_SUBNET
        servers.append({
            "sourceServerId": f"s-{index + 1:017x}",
            "target": {
                "accountId": TARGET_ACCOUNTS[account_index],
                "subnetId": f"subnet-0{network:02d}{subnet:02d}{'a' * 12}",
                "securityGroupIds": [f"sg-0{network:02d}{'b' * 14}"],
                "privateIpAddress": f"10.{network}.{subnet}.{10 + within % SERVERS_PER_SUBNET}",
                "kmsKeyId": "alias/mgn-cutover-target",
                "tags": {"Name": f"bench-{index + 1:03d}"},
            },
        })
    request = {"wave": f"bench-{size}-{path}", "servers": servers,
               "options": {"maxConcurrency": min(size, 200),
                           "restoreFrom": "targetImage" if path == "classic" else "sharedImage"}}
    server = {"diskSizesGiB": [DISK_GIB]}
    if path == "direct":
        server["replicationKey"] = "sharing-key"
    return request, {"defaultServer": server}


# --- the counters ----------------------------------------------------------------------------------------------


@dataclass
class Counters:
    """What the interpreter and the handlers did, counted as it happened."""

    states_entered: int = 0
    retries: int = 0
    calls: Counter = field(default_factory=Counter)  # (service, operation) -> calls made by handlers
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def transitions(self) -> int:
        # AWS bills a state transition for every state entered and for every retry of a state.
        return self.states_entered + self.retries

    def by_service(self) -> dict[str, int]:
        found: Counter = Counter()
        for (service, _), count in self.calls.items():
            found[service] += count
        return dict(sorted(found.items()))


@contextmanager
def counting() -> Iterator[Counters]:
    """Count state transitions and the handlers' AWS calls while the body runs.

    Enter it before the Sandbox: botocore sessions take their handlers from the built-in list when they are
    created, and the sandbox creates its sessions when it starts.
    """
    from moto.stepfunctions.parser.asl.component.common.retry.retry_outcome import RetryOutcome
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    counters = Counters()
    original_add_event, original_retry = EventManager.add_event, ExecutionState._handle_retry

    def add_event(self, context, event_type, *args, **kwargs):
        if str(getattr(event_type, "value", event_type)).endswith("StateEntered"):
            with counters._lock:
                counters.states_entered += 1
        return original_add_event(self, context, event_type, *args, **kwargs)

    def handle_retry(self, env, failure_event):
        outcome = original_retry(self, env, failure_event)
        if outcome == RetryOutcome.CanRetry:
            with counters._lock:
                counters.retries += 1
        return outcome

    def before_call(model: Any = None, **_: Any) -> None:
        # Only what a handler asks of AWS: the sandbox's own calls (building the world, polling the execution,
        # the inventory) run outside any function, and the interpreter's Lambda Invoke calls are invocations.
        if model is None or iam.current_function.get() is None:
            return
        with counters._lock:
            counters.calls[(model.service_model.service_name, model.name)] += 1

    # First in the list: a later handler may answer the call (a refusal, an injected fault) and end the emit.
    entry = ("before-call", before_call)
    botocore.handlers.BUILTIN_HANDLERS.insert(0, entry)
    EventManager.add_event, ExecutionState._handle_retry = add_event, handle_retry
    try:
        yield counters
    finally:
        EventManager.add_event, ExecutionState._handle_retry = original_add_event, original_retry
        if entry in botocore.handlers.BUILTIN_HANDLERS:
            botocore.handlers.BUILTIN_HANDLERS.remove(entry)


# --- one measurement -------------------------------------------------------------------------------------------


def memory_sizes(template: dict) -> dict[str, int]:
    """Each function's memory in MB, as template.yaml gives it (its own, else the Globals', else Lambda's)."""
    default = template.get("Globals", {}).get("Function", {}).get("MemorySize", LAMBDA_DEFAULT_MEMORY_MB)
    return {logical_id: int(resource.get("Properties", {}).get("MemorySize", default))
            for logical_id, resource in template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function"}


def measure(size: int, path: str) -> dict:
    """Rehearse the generated wave of `size` servers on `path` and return its figures (totals and per server)."""
    from sandbox.runner import EXECUTION_TIMEOUT_SECONDS, Sandbox

    request, world = generated_wave(size, path)
    # CPU time as well as wall time: on a shared machine the wall time says as much about the neighbours.
    started, cpu_started = time.monotonic(), time.process_time()
    # The handlers print their metrics (Lambda's embedded metric format); stdout is the benchmark's.
    with counting() as counters, contextlib.redirect_stdout(io.StringIO()):
        with Sandbox(request, world) as sandbox:
            built = time.monotonic()
            rehearsal = sandbox.rehearse(timeout=max(EXECUTION_TIMEOUT_SECONDS, REAL_SECONDS_PER_SERVER * size))
            ran = time.monotonic()
            found = figures(sandbox, rehearsal, counters, size)
    found.update(size=size, path=path, status=rehearsal.status, error=rehearsal.error,
                 wallSeconds=round(time.monotonic() - started, 2), worldSeconds=round(built - started, 2),
                 executionSeconds=round(ran - built, 2), cpuSeconds=round(time.process_time() - cpu_started, 2))
    found["perServer"]["wallSeconds"] = round(found["wallSeconds"] / size, 3)
    found["perServer"]["cpuSeconds"] = round(found["cpuSeconds"] / size, 3)
    return found


def figures(sandbox: Any, rehearsal: Any, counters: Counters, size: int) -> dict:
    """The figures of one rehearsal of `size` servers: totals, the simulated clock's, and per server."""
    invocations = len(sandbox.invocations)
    calls = sum(counters.calls.values())
    simulated = _simulated(sandbox, rehearsal)
    gb_seconds = simulated.pop("gbSeconds")
    return {
        "totals": {"stateTransitions": counters.transitions, "statesEntered": counters.states_entered,
                   "retries": counters.retries, "awsCalls": calls, "lambdaInvocations": invocations,
                   "awsCallsByService": counters.by_service(),
                   "awsCallsByOperation": {f"{service}:{operation}": count
                                           for (service, operation), count in sorted(counters.calls.items())},
                   "gbSeconds": gb_seconds},
        "simulated": simulated,
        "perServer": {"stateTransitions": counters.transitions / size, "awsCalls": calls / size,
                      "lambdaInvocations": invocations / size,
                      "awsCallsByService": {s: n / size for s, n in counters.by_service().items()},
                      "gbSeconds": _per(gb_seconds, size),
                      "downtimeSeconds": simulated["downtimeSeconds"],
                      "endToEndSeconds": simulated["endToEndSeconds"],
                      "fullCopiesOnCriticalPath": simulated["fullCopiesOnCriticalPath"]},
    }


def _per(total: float | None, size: int) -> float | None:
    return None if total is None else total / size


def gb_seconds_total(sandbox: Any) -> float | None:
    """GB-seconds of every invocation: its function's memory times its simulated duration; None without a
    simulated clock."""
    steps = getattr(sandbox, "steps", None)
    if not steps:
        return None
    memory = memory_sizes(sandbox.template)
    function_of = {name: logical_id for logical_id, states in sandbox._state_names.items() for _, name in states}
    return sum(memory.get(function_of.get(step.name, ""), LAMBDA_DEFAULT_MEMORY_MB) / 1024 * step.seconds
               for step in steps)


def _simulated(sandbox: Any, rehearsal: Any) -> dict:
    """The simulated clock's figures: the wave's time, each server's downtime and end-to-end time (mean and
    worst), and the full copies each server waited for before its finalize. None where no clock ran."""
    timing = getattr(rehearsal, "timing", None) or {}
    servers = timing.get("servers") or {}
    found = {"waveSeconds": timing.get("waveSeconds") if servers else None, "gbSeconds": gb_seconds_total(sandbox),
             "downtimeSeconds": None, "downtimeSecondsWorst": None, "endToEndSeconds": None,
             "fullCopiesOnCriticalPath": None}
    if not servers:
        return found
    downtimes = [times["cutoverSeconds"] for times in servers.values() if times.get("cutoverSeconds") is not None]
    ends = [times["endToEndSeconds"] for times in servers.values()]
    if downtimes:
        found.update(downtimeSeconds=sum(downtimes) / len(downtimes), downtimeSecondsWorst=max(downtimes))
    found["endToEndSeconds"] = sum(ends) / len(ends)
    found["fullCopiesOnCriticalPath"] = _full_copies_before_finalize(sandbox, list(servers))
    return found


def _full_copies_before_finalize(sandbox: Any, servers: list[str]) -> float | None:
    operations = getattr(getattr(sandbox.world, "clock", None), "operations", None)
    if operations is None:
        return None
    # A copy still running when Finalize Cutover starts (the target's own copy on the direct path) is not
    # one the downtime waited for.
    finalizing = {step.server: step.start for step in sandbox.steps if step.name == FINALIZE_STATE}
    copies: Counter = Counter()
    for op in operations:
        if op.full_copy and op.server in finalizing and op.end <= finalizing[op.server]:
            copies[op.server] += 1
    return sum(copies[server] for server in servers) / len(servers)


# --- many measurements -----------------------------------------------------------------------------------------


def measure_in_child(size: int, path: str) -> dict:
    """`measure` in a fresh interpreter: each rehearsal's wall time is its own, not the garbage of the last."""
    done = subprocess.run([sys.executable, "-m", "sandbox.wave_benchmark", "--one", str(size), path],
                          cwd=cfn.ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the benchmark of {size} servers on the {path} path failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def run(sizes: list[int], paths: list[str], progress=None, in_process: bool = False) -> dict:
    """Every (size, path) measured, and for each size the classic path's figures as ratios to the direct one's."""
    results = []
    for size in sizes:
        for path in paths:
            figures = measure(size, path) if in_process else measure_in_child(size, path)
            results.append(figures)
            if progress:
                progress(f"{size} servers, {path} path: {figures['status']} in {figures['wallSeconds']} s")
    return {"diskGiB": DISK_GIB, "targetAccounts": len(TARGET_ACCOUNTS), "results": results,
            "ratios": ratios(results), "growth": growth(results)}


# The per-server figures compared between the paths.
_COMPARED = ("downtimeSeconds", "endToEndSeconds", "fullCopiesOnCriticalPath", "stateTransitions", "awsCalls",
             "lambdaInvocations", "gbSeconds", "wallSeconds", "cpuSeconds")


def ratios(results: list[dict]) -> dict[str, dict[str, float | None]]:
    """For each size measured on both paths: classic / direct, per figure (None where either is unavailable)."""
    found = {}
    by_key = {(r["size"], r["path"]): r for r in results}
    for size in sorted({r["size"] for r in results}):
        direct, classic = by_key.get((size, "direct")), by_key.get((size, "classic"))
        if direct and classic:
            found[str(size)] = {name: _ratio(classic["perServer"].get(name), direct["perServer"].get(name))
                                for name in _COMPARED}
    return found


# The per-server figures followed from the smallest wave to the largest: flat counts mean each server costs the
# same whatever the wave, and flat wall time per server means the rehearsal's wall time grows linearly.
_GROWN = ("stateTransitions", "awsCalls", "lambdaInvocations", "wallSeconds", "cpuSeconds")


def growth(results: list[dict]) -> dict[str, dict[str, dict[str, float | None]]]:
    """For each path measured at two sizes or more: each size's per-server figures / those of its smallest wave."""
    found: dict[str, dict[str, dict[str, float | None]]] = {}
    for path in dict.fromkeys(r["path"] for r in results):
        measured = sorted((r for r in results if r["path"] == path), key=lambda r: r["size"])
        if len(measured) < 2:
            continue
        smallest = measured[0]["perServer"]
        found[path] = {str(r["size"]): {name: _ratio(r["perServer"].get(name), smallest.get(name)) for name in _GROWN}
                       for r in measured}
    return found


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator in (None, 0):
        return None
    return numerator / denominator


# --- the table -------------------------------------------------------------------------------------------------

_COLUMNS = (
    # (heading, how to read it off one result)
    ("servers", lambda r: str(r["size"])),
    ("path", lambda r: r["path"]),
    ("status", lambda r: r["status"]),
    ("wave (sim)", lambda r: _duration(r["simulated"]["waveSeconds"])),
    ("downtime/server (sim)", lambda r: _duration(r["perServer"]["downtimeSeconds"])),
    ("end-to-end/server (sim)", lambda r: _duration(r["perServer"]["endToEndSeconds"])),
    ("full copies before finalize", lambda r: _number(r["perServer"]["fullCopiesOnCriticalPath"], 1)),
    ("transitions/server", lambda r: _number(r["perServer"]["stateTransitions"], 1)),
    ("AWS calls/server", lambda r: _number(r["perServer"]["awsCalls"], 1)),
    ("invocations/server", lambda r: _number(r["perServer"]["lambdaInvocations"], 1)),
    ("GB-s/server", lambda r: _number(r["perServer"]["gbSeconds"], 2)),
    ("wall s", lambda r: _number(r["wallSeconds"], 1)),
    ("wall s/server", lambda r: _number(r["perServer"]["wallSeconds"], 2)),
    ("CPU s/server", lambda r: _number(r["perServer"]["cpuSeconds"], 2)),
)


def render(benchmark: dict, markdown: bool = False) -> str:
    """The benchmark as text tables: the figures, the classic path's ratios, each path's growth with the wave,
    AWS calls per server by service."""
    results = benchmark["results"]
    lines = [f"Generated waves: servers over {benchmark['targetAccounts']} target accounts, one "
             f"{benchmark['diskGiB']} GiB disk each; (sim) is the rehearsal's simulated clock, wall the real time.",
             ""]
    lines += _table([heading for heading, _ in _COLUMNS], [[read(r) for _, read in _COLUMNS] for r in results],
                    markdown)
    if benchmark["ratios"]:
        lines += ["", "Classic path / direct path, per server, measured in the same run:", ""]
        names = [name for name in _COMPARED]
        lines += _table(["servers", *names],
                        [[size, *(_times(row[name]) for name in names)] for size, row in benchmark["ratios"].items()],
                        markdown)
    if benchmark.get("growth"):
        lines += ["", "Per server, as a ratio to the same path's smallest wave (1.00x is flat; flat wall s/server is "
                      "wall time growing linearly):", ""]
        lines += _table(["path", "servers", *_GROWN],
                        [[path, size, *(_times(row[name]) for name in _GROWN)]
                         for path, sizes in benchmark["growth"].items() for size, row in sizes.items()], markdown)
    services = sorted({s for r in results for s in r["perServer"]["awsCallsByService"]})
    if services:
        lines += ["", "AWS calls per server, by service:", ""]
        lines += _table(["servers", "path", *services],
                        [[str(r["size"]), r["path"], *(_number(r["perServer"]["awsCallsByService"].get(s, 0), 1)
                                                        for s in services)] for r in results], markdown)
    return "\n".join(lines)


def _table(headings: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings),
                *("| " + " | ".join(row) + " |" for row in rows)]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headings, *rows, strict=True)]
    return ["  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True))
            for row in [headings, *rows]]


def _number(value: float | None, digits: int) -> str:
    return UNAVAILABLE if value is None else f"{value:.{digits}f}"


def _times(value: float | None) -> str:
    return UNAVAILABLE if value is None else f"{value:.2f}x"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return UNAVAILABLE
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{rest:02d}s" if hours else f"{minutes}m{rest:02d}s"


# --- command line ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="wave sizes, comma-separated (1 to 500)")
    parser.add_argument("--paths", default=",".join(PATHS), help="direct, reencrypt and classic, or some of them, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown to FILE")
    parser.add_argument("--imports", action="store_true",
                        help="instead, the cold-start figures: each handler module's import time as a ratio to boto3")


def parse_list(text: str, what: str, allowed=None) -> list:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"--{what} names nothing")
    if allowed is None:
        try:
            values = [int(item) for item in items]
        except ValueError:
            raise ValueError(f"--{what} must list whole numbers, not {text!r}") from None
        bad = [value for value in values if not 1 <= value <= 500]
        if bad:
            raise ValueError(f"--{what}: a wave holds 1 to 500 servers, not {bad}")
        return values
    bad = [item for item in items if item not in allowed]
    if bad:
        raise ValueError(f"--{what}: {bad} not among {', '.join(allowed)}")
    return items


def markdown_document(benchmark: dict, command: str) -> str:
    wall = sum(result["wallSeconds"] for result in benchmark["results"])
    return "\n".join([
        "# Wave benchmark", "",
        f"Made by `{command}`; each row is one rehearsal of a generated wave in the local sandbox (the real state "
        "machine and handlers on moto), in its own process. Simulated times are the sandbox's model of AWS "
        "(`speed` in sandbox/world.py), not a measurement of AWS; wall and CPU times are those of the machine "
        f"that ran it, {wall:.0f} s of wall time for the rehearsals together.", "",
        render(benchmark, markdown=True), ""])


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["--one"]:
        # A child process of `run`: one measurement, as JSON on stdout.
        print(json.dumps(measure(int(arguments[1]), arguments[2])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m sandbox benchmark")
    add_arguments(parser)
    return run_command(parser.parse_args(arguments))


def run_command(args: argparse.Namespace) -> int:
    if args.imports:
        from sandbox import benchmark as cold_start

        cold_start.print_import_ratios()
        return 0
    try:
        sizes, paths = parse_list(args.sizes, "sizes"), parse_list(args.paths, "paths", PATHS)
    except ValueError as err:
        print(f"sandbox benchmark: {err}", file=sys.stderr)
        return 2
    benchmark = run(sizes, paths, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(benchmark, indent=2) if args.json else render(benchmark))
    if args.markdown:
        command = f"python -m sandbox benchmark --sizes {','.join(map(str, sizes))} --paths {','.join(paths)}"
        with open(args.markdown, "w") as out:
            out.write(markdown_document(benchmark, command))
    return 0 if all(r["status"] == "SUCCEEDED" for r in benchmark["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
