"""The sandbox's command line.

    python -m sandbox rehearse events/console-wave.json [--world FILE] [--json]
    python -m sandbox rehearse --event events/cutover-requested.json [--enable-mgn-launch-events]
    python -m sandbox invoke CreateImageFunction --event events/functions/create_image.json
    python -m sandbox rehearse REQUEST --fault ec2:CreateImage:throttle:1-5 --fault CreateImageFunction:crash-after
    python -m sandbox rehearse REQUEST --approve | --reject REASON [--approver NAME]
    python -m sandbox fault-matrix REQUEST [--world FILE] [--kinds throttle,5xx,crash-after] [--operations ...]
    python -m sandbox iam-report [--json]
    python -m sandbox preflight REQUEST [--world FILE] [--json]
    python -m sandbox benchmark [--sizes 1,10,100,500] [--paths direct,classic] [--json] [--markdown FILE]
    python -m sandbox benchmark --imports

`rehearse` runs the real state machine on a simulated migration account and its target
accounts and ends with a report; `invoke` is the Docker-free stand-in for
`sam local invoke FUNCTION -e EVENT`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from sandbox import report, wave_benchmark
from sandbox.faults import KINDS, MATRIX_KINDS, FaultSpecError, passed, render_matrix, run_matrix
from sandbox.runner import Sandbox, SandboxError, load_json

# Exit codes a script can branch on.
EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (SandboxError, FileNotFoundError, json.JSONDecodeError) as err:
        print(f"sandbox: {err}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    rehearse = commands.add_parser("rehearse", help="rehearse a cutover request end to end")
    rehearse.add_argument("request", nargs="?", help="a request file, as given to StartExecution (see events/)")
    rehearse.add_argument("--event", help="an EventBridge event file: put on the sandbox's bus, it starts the state "
                                          "machine if a rule of template.yaml matches it")
    rehearse.add_argument("--enable-mgn-launch-events", action="store_true",
                          help="deploy the stand-in stack with EnableMgnLaunchEvents=true (the MGN console rule)")
    rehearse.add_argument("--world", help="a world file: servers, disks, keys, failures (see sandbox/worlds/)")
    rehearse.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    rehearse.add_argument("--verbose", "-v", action="store_true", help="show the handlers' structured logs on stderr")
    rehearse.add_argument("--fault", action="append", default=[], metavar="FAULT",
                          help="inject a fault: [SCOPE/]SERVICE:Operation:KIND[:CALLS] or TARGET:crash-after[:CALLS]"
                               " (repeatable; see sandbox/faults.py)")
    gate = rehearse.add_mutually_exclusive_group()
    gate.add_argument("--approve", action="store_true",
                      help="approve the wave at its approval gate as soon as it waits (options.approval.required)")
    gate.add_argument("--reject", metavar="REASON", help="reject the wave at its approval gate, with this reason")
    rehearse.add_argument("--approver", default="rehearsal", help="the name the answer is given in (default rehearsal)")
    rehearse.set_defaults(run=_rehearse)

    matrix = commands.add_parser("fault-matrix", help="rehearse once per (operation x fault kind) and tabulate")
    matrix.add_argument("request", help="a request file")
    matrix.add_argument("--world", help="a world file")
    matrix.add_argument("--kinds", default=",".join(MATRIX_KINDS), help="fault kinds, comma-separated")
    matrix.add_argument("--operations",
                        help="SERVICE:Operation list, comma-separated (default: every one the pipeline calls)")
    matrix.add_argument("--jobs", type=int, default=2, help="rehearsals run at once, each in its own process")
    matrix.add_argument("--json", action="store_true", help="print the matrix as JSON")
    matrix.set_defaults(run=_fault_matrix)

    invoke = commands.add_parser("invoke", help="run one function with an event, like sam local invoke")
    invoke.add_argument("function", help="the function's logical id in template.yaml, e.g. CreateImageFunction")
    invoke.add_argument("--event", "-e", required=True, help="the event file, e.g. events/functions/create_image.json")
    invoke.add_argument("--world", help="a world file")
    invoke.set_defaults(run=_invoke)
    diagram = commands.add_parser("diagram", help="redraw docs/state-machine.md from the state machine definition")
    diagram.set_defaults(run=_diagram)
    iam_report = commands.add_parser("iam-report", help="rehearse the IAM scenarios: calls refused, permissions unused")
    iam_report.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    iam_report.set_defaults(run=_iam_report)
    preflight = commands.add_parser("preflight", help="run the read-only preflight of a request: a table of checks")
    preflight.add_argument("request", help="a request file (its mode is set to preflight)")
    preflight.add_argument("--world", help="a world file, e.g. sandbox/worlds/preflight-problems.json")
    preflight.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    preflight.set_defaults(run=_preflight)
    benchmark = commands.add_parser("benchmark", help="rehearse generated waves: per-server cost, direct vs classic")
    wave_benchmark.add_arguments(benchmark)
    benchmark.set_defaults(run=wave_benchmark.run_command)
    return parser


def _preflight(args: argparse.Namespace) -> int:
    import contextlib
    import io

    from sandbox import preflight

    # The handlers' metrics are printed (as Lambda's embedded metric format); stdout is the table's.
    with contextlib.redirect_stdout(io.StringIO()):
        rehearsal, servers = preflight.run(load_json(args.request), load_json(args.world) if args.world else None)
    if args.json:
        print(json.dumps({"status": rehearsal.status, "error": rehearsal.error, "servers": servers,
                          "inventory": rehearsal.inventory}, indent=2, default=str))
    else:
        print(preflight.render(rehearsal, servers))
    return EXIT_SUCCEEDED if rehearsal.status == "SUCCEEDED" else EXIT_FAILED


def _iam_report(args: argparse.Namespace) -> int:
    import contextlib
    import io

    from sandbox import iam

    # The handlers' metrics are printed (as Lambda's embedded metric format); stdout is the report's.
    with contextlib.redirect_stdout(io.StringIO()):
        found = iam.rehearse_scenarios()
    explained = iam.explanations()
    unexplained = found.unexplained(explained)
    if args.json:
        print(json.dumps({"scenarios": found.outcomes, "denied": [d.describe() for d in found.denied],
                          "unused": {role: [f"{sid} {action}" for sid, action in pairs]
                                     for role, pairs in found.unused().items()},
                          "unexplained": [" ".join(entry) for entry in unexplained]}, indent=2))
    else:
        print(found.render(explained))
    return EXIT_FAILED if found.denied or unexplained else EXIT_SUCCEEDED


def _diagram(_args: argparse.Namespace) -> int:
    from sandbox import diagram

    print(f"wrote {diagram.write().relative_to(diagram.ROOT)}")
    return EXIT_SUCCEEDED


def _rehearse(args: argparse.Namespace) -> int:
    if (args.request is None) == (args.event is None):
        raise SandboxError("rehearse takes a request file or --event FILE, and not both")
    if args.event:
        return _rehearse_event(args)
    request = load_json(args.request)
    world = load_json(args.world) if args.world else None
    answer = _gate_answer(args)
    gated = isinstance(request, dict) and ((request.get("options") or {}).get("approval") or {}).get("required")
    if gated and answer is None:
        print("sandbox: the request has an approval gate; without --approve or --reject REASON the rehearsal waits"
              " for its deadline (options.approval.timeoutSeconds, real seconds)", file=sys.stderr)
    started = time.monotonic()
    progress = None if args.json else _progress_printer(started)
    with Sandbox(request, world, progress=progress, log_stream=sys.stderr if args.verbose else None,
                 faults=args.fault) as sandbox:
        sandbox.gate_answer = answer
        rehearsal = sandbox.rehearse()
    if args.json:
        print(json.dumps(rehearsal.as_json(), indent=2, default=str))
    else:
        print(report.render(rehearsal, time.monotonic() - started))
    return EXIT_SUCCEEDED if rehearsal.status == "SUCCEEDED" else EXIT_FAILED


def _gate_answer(args: argparse.Namespace) -> tuple[str, str, str | None] | None:
    """What the rehearsal answers at the approval gate: approve, reject with a reason, or nothing."""
    if args.reject is not None and not args.reject.strip():
        raise SandboxError("--reject needs a reason: it is what the report and the rollback record")
    if args.approve:
        return "approve", args.approver, None
    return ("reject", args.approver, args.reject) if args.reject is not None else None


def _rehearse_event(args: argparse.Namespace) -> int:
    event = load_json(args.event)
    world = load_json(args.world) if args.world else None
    started = time.monotonic()
    progress = None if args.json else _progress_printer(started)
    parameters = {"EnableMgnLaunchEvents": "true"} if args.enable_mgn_launch_events else {}
    with Sandbox(event, world, progress=progress, log_stream=sys.stderr if args.verbose else None,
                 faults=args.fault, stack_parameters=parameters) as sandbox:
        started_runs = sandbox.rehearse_event(event)
    if args.json:
        print(json.dumps({"matchedRules": [rule for rule, _ in started_runs],
                          "executions": [run.as_json() for _, run in started_runs]}, indent=2, default=str))
    elif not started_runs:
        print("No enabled rule of template.yaml matches this event: it started no execution.")
    for rule, run in started_runs if not args.json else []:
        print(f"Rule {rule} started execution {run.execution}")
        print(report.render(run, time.monotonic() - started))
    return EXIT_SUCCEEDED if all(run.status == "SUCCEEDED" for _, run in started_runs) else EXIT_FAILED


def _fault_matrix(args: argparse.Namespace) -> int:
    request = load_json(args.request)
    world = load_json(args.world) if args.world else None
    kinds = tuple(kind.strip() for kind in args.kinds.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise SandboxError(f"unknown fault kinds {unknown}; kinds are {', '.join(KINDS)}")
    operations = [op.strip() for op in args.operations.split(",")] if args.operations else None
    try:
        matrix = run_matrix(request, world, kinds, operations, jobs=args.jobs,
                            progress=lambda line: print(line, file=sys.stderr, flush=True))
    except FaultSpecError as err:
        raise SandboxError(str(err)) from None
    print(json.dumps(matrix, indent=2) if args.json else render_matrix(matrix))
    return EXIT_SUCCEEDED if all(passed(row) for row in matrix["rows"]) else EXIT_FAILED


def _invoke(args: argparse.Namespace) -> int:
    from sandbox.invoke import invoke_function

    event = load_json(args.event)
    world = load_json(args.world) if args.world else None
    outcome = invoke_function(args.function, event, world)
    print(json.dumps(outcome, indent=2, default=str))
    return EXIT_FAILED if outcome.get("errorType") else EXIT_SUCCEEDED


def _progress_printer(started: float):
    def show(event: dict[str, Any]) -> None:
        elapsed = time.monotonic() - started
        server = event["server"] or "wave"
        print(f"[{elapsed:7.2f}s] {server:<20} {event['step']:<40} {report.step_outcome(event)}", flush=True)

    return show


if __name__ == "__main__":
    sys.exit(main())
