"""The sandbox's command line.

    python -m sandbox rehearse events/console-wave.json [--world FILE] [--json]
    python -m sandbox invoke CreateImageFunction --event events/functions/create_image.json

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

from sandbox import report
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
    rehearse.add_argument("request", help="a request file, as given to StartExecution (see events/)")
    rehearse.add_argument("--world", help="a world file: servers, disks, keys, failures (see sandbox/worlds/)")
    rehearse.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    rehearse.add_argument("--verbose", "-v", action="store_true", help="show the handlers' structured logs on stderr")
    rehearse.set_defaults(run=_rehearse)

    invoke = commands.add_parser("invoke", help="run one function with an event, like sam local invoke")
    invoke.add_argument("function", help="the function's logical id in template.yaml, e.g. CreateImageFunction")
    invoke.add_argument("--event", "-e", required=True, help="the event file, e.g. events/functions/create_image.json")
    invoke.add_argument("--world", help="a world file")
    invoke.set_defaults(run=_invoke)
    return parser


def _rehearse(args: argparse.Namespace) -> int:
    request = load_json(args.request)
    world = load_json(args.world) if args.world else None
    started = time.monotonic()
    progress = None if args.json else _progress_printer(started)
    with Sandbox(request, world, progress=progress, log_stream=sys.stderr if args.verbose else None) as sandbox:
        rehearsal = sandbox.rehearse()
    if args.json:
        print(json.dumps(rehearsal.as_json(), indent=2, default=str))
    else:
        print(report.render(rehearsal, time.monotonic() - started))
    return EXIT_SUCCEEDED if rehearsal.status == "SUCCEEDED" else EXIT_FAILED


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
