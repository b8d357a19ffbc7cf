"""./scripts/cutover: start, watch, approve and clean up cutover waves, on AWS or in the sandbox.

    cutover start REQUEST [--watch [--plain]]        start a wave (the same request twice is one execution)
    cutover watch EXECUTION [--plain] [--no-follow]  a live table, one row per server, until it ends
    cutover approve EXECUTION                        let the servers waiting at the approval gate finalize
    cutover reject EXECUTION --reason TEXT           send them back (rollback) instead
    cutover preflight REQUEST                        the read-only checks of every server, run by the pipeline
    cutover status SERVER                            what the ledger says is held and left over
    cutover cleanup SERVER [--dry-run]               remove what the ledger says is left over
    cutover schedule REQUEST --at TIME [--timezone Z] start the wave once, later (EventBridge Scheduler)

Every command takes --profile, --region, --stack (default mgn-cutover) and --json; the stack's
outputs say where the state machine, the ledger, the approval table and the scheduler role are
(or give them with --state-machine-arn, --ledger-table, --approval-table, --scheduler-role-arn).

--sandbox [--world FILE] runs `start` and `preflight` against a fresh in-process sandbox instead of
AWS: `start --sandbox` always follows the execution to its end (the sandbox ends with the process),
and `--approve` / `--reject REASON` answer the approval gate from there. The other commands need
state that outlives one process; in the sandbox they are shown by tests that call them inside one
Sandbox (tests/cli/).

Exit codes:
  0  succeeded / passed / nothing left
  1  failed: the execution failed, a check failed, something is left over
  2  usage or bad input (the field and the reason are named; nothing was changed)
  3  still running or waiting (watch --no-follow on a running execution, a server claimed by a running one)
  4  AWS refused (access denied, not found)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

from mgncutover import commands
from mgncutover.commands import EXIT_REFUSED, EXIT_USAGE, Context, UsageError
from mgncutover.stack import DEFAULT_STACK, Stack, StackOutputMissing

# How long `watch` follows an execution before it gives up watching (the execution goes on).
WATCH_TIMEOUT_SECONDS = 24 * 3600


def main(argv: list[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and EXIT_USAGE
    if args.sandbox_first or args.world_first:
        if not hasattr(args, "sandbox"):
            print("cutover: --sandbox runs start and preflight only: the sandbox lives as long as one command",
                  file=sys.stderr)
            return EXIT_USAGE
        args.sandbox, args.world = True, args.world or args.world_first
    try:
        return args.run(args, out)
    except (UsageError, StackOutputMissing, ProfileNotFound) as err:
        print(f"cutover: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as err:
        print(f"cutover: AWS refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except (NoCredentialsError, BotoCoreError) as err:
        print(f"cutover: AWS could not be reached: {err}", file=sys.stderr)
        return EXIT_REFUSED


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="the AWS profile (the migration account)")
    common.add_argument("--region", help="the AWS region of the stack")
    common.add_argument("--stack", default=DEFAULT_STACK, help="the migration stack's name (default %(default)s)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    for flag in ("state-machine-arn", "ledger-table", "approval-table", "scheduler-role-arn", "rollback-function"):
        common.add_argument(f"--{flag}", help=argparse.SUPPRESS)
    sandboxed = argparse.ArgumentParser(add_help=False)
    sandboxed.add_argument("--sandbox", action="store_true", help="run against a fresh in-process sandbox")
    sandboxed.add_argument("--world", help="the sandbox's world file (see sandbox/worlds/)")

    parser = argparse.ArgumentParser(prog="cutover", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    # `cutover --sandbox start ...` and `cutover start --sandbox ...` both work; merged in `main`.
    parser.add_argument("--sandbox", dest="sandbox_first", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--world", dest="world_first", help=argparse.SUPPRESS)
    verbs = parser.add_subparsers(required=True, metavar="COMMAND")

    start = verbs.add_parser("start", parents=[common, sandboxed], help="start a wave")
    start.add_argument("request", help="the request file (see events/)")
    start.add_argument("--watch", action="store_true", help="then watch it to its end")
    _watch_flags(start)
    gate = start.add_mutually_exclusive_group()
    gate.add_argument("--approve", action="store_true", help="sandbox: approve the gate when the servers reach it")
    gate.add_argument("--reject", metavar="REASON", help="sandbox: reject the gate with this reason")
    start.set_defaults(run=_start)

    watch = verbs.add_parser("watch", parents=[common], help="watch an execution, one row per server")
    watch.add_argument("execution", help="the execution's ARN, or its name")
    _watch_flags(watch)
    watch.add_argument("--no-follow", action="store_true", help="show it once; exit 3 if it is still running")
    watch.set_defaults(run=_watch)

    approve = verbs.add_parser("approve", parents=[common], help="approve the servers waiting at the gate")
    approve.add_argument("execution", help="the execution's ARN, or its name")
    approve.add_argument("--approver", help="who approves (default: the caller's ARN)")
    approve.set_defaults(run=_approve)
    reject = verbs.add_parser("reject", parents=[common], help="reject the servers waiting at the gate")
    reject.add_argument("execution", help="the execution's ARN, or its name")
    reject.add_argument("--reason", required=True, help="why (recorded, and in the rollback's cause)")
    reject.add_argument("--approver", help="who rejects (default: the caller's ARN)")
    reject.set_defaults(run=_reject)

    preflight = verbs.add_parser("preflight", parents=[common, sandboxed], help="check every server, change nothing")
    preflight.add_argument("request", help="the request file")
    preflight.set_defaults(run=_preflight)

    status = verbs.add_parser("status", parents=[common], help="what the ledger says of a source server")
    status.add_argument("server", help="the source server id (s-...)")
    status.set_defaults(run=_status)
    cleanup = verbs.add_parser("cleanup", parents=[common], help="remove what the ledger says is left over")
    cleanup.add_argument("server", help="the source server id (s-...)")
    cleanup.add_argument("--dry-run", action="store_true", help="list what would be removed (exit 1 if anything)")
    cleanup.set_defaults(run=_cleanup)

    schedule = verbs.add_parser("schedule", parents=[common], help="start a wave once, at a given time")
    schedule.add_argument("request", help="the request file")
    schedule.add_argument("--at", required=True, metavar="yyyy-mm-ddThh:mm:ss", help="when")
    schedule.add_argument("--timezone", default="UTC", help="the time zone of --at (IANA name, default UTC)")
    schedule.set_defaults(run=_schedule)
    exit_codes = "Exit codes:" + __doc__.split("Exit codes:", 1)[1]
    for command in verbs.choices.values():
        command.epilog, command.formatter_class = exit_codes, argparse.RawDescriptionHelpFormatter
    return parser


def _watch_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plain", action="store_true", help="a line per change, then the table (no redrawing)")
    parser.add_argument("--interval", type=float, help="seconds between polls (default 5; 0.1 in the sandbox)")
    parser.add_argument("--timeout", type=float, default=WATCH_TIMEOUT_SECONDS,
                        help="stop watching after this many seconds (exit 3; the execution goes on)")


# -- the commands ---------------------------------------------------------------------------------------------


def _start(args: argparse.Namespace, out) -> int:
    request = _load(args.request)
    if (args.approve or args.reject) and not args.sandbox:
        raise UsageError("--approve and --reject answer the gate from the sandbox; on AWS use `cutover approve`")
    if args.sandbox:
        return _sandboxed(args, out, request, lambda ctx, sandbox: _start_in_sandbox(args, ctx, request))
    ctx = _context(args, out)
    code, arn = commands.start(ctx, request)
    if not args.watch:
        return code
    return commands.watch(ctx, arn, plain=args.plain, interval=_interval(args, 5.0), timeout=args.timeout)[0]


def _start_in_sandbox(args: argparse.Namespace, ctx: Context, request: dict) -> int:
    from mgncutover import sandbox_backend

    code, arn = commands.start(ctx, request)
    on_poll = _gate_answerer(ctx, arn, args) if (args.approve or args.reject) else None
    watching = ctx if args.watch else Context(ctx.session, ctx.stack, out=commands.Discard())
    code, wave = commands.watch(watching, arn, plain=args.plain, interval=_interval(args, sandbox_backend.POLL_SECONDS),
                                timeout=args.timeout, on_poll=on_poll)
    if not args.watch and not ctx.json:
        ctx.say(f"{wave.status}")
    return code


def _gate_answerer(ctx: Context, arn: str, args: argparse.Namespace):
    from pipeline import approval

    name = arn.rsplit(":", 1)[1]

    def answer(_wave) -> None:
        # As an operator would: once the wave's approval notification is out, every server is at the gate.
        table = ctx.stack.approval_table
        if not approval.notified(name, session=ctx.session, table=table) or not approval.pending(
                name, session=ctx.session, table=table):
            return
        if args.approve:
            approval.approve(name, "sandbox operator", session=ctx.session, table=ctx.stack.approval_table)
        else:
            approval.reject(name, "sandbox operator", args.reject, session=ctx.session, table=ctx.stack.approval_table)

    return answer


def _watch(args: argparse.Namespace, out) -> int:
    ctx = _context(args, out)
    return commands.watch(ctx, args.execution, plain=args.plain, follow_to_end=not args.no_follow,
                          interval=_interval(args, 5.0), timeout=args.timeout)[0]


def _approve(args: argparse.Namespace, out) -> int:
    return commands.approve(_context(args, out), args.execution, args.approver)


def _reject(args: argparse.Namespace, out) -> int:
    return commands.reject(_context(args, out), args.execution, args.reason, args.approver)


def _preflight(args: argparse.Namespace, out) -> int:
    from mgncutover import sandbox_backend

    request = _load(args.request)
    if args.sandbox:
        return _sandboxed(args, out, commands.preflight_request(request),
                          lambda ctx, _: commands.preflight(ctx, request, interval=sandbox_backend.POLL_SECONDS))
    return commands.preflight(_context(args, out), request)


def _status(args: argparse.Namespace, out) -> int:
    return commands.status(_context(args, out), args.server)


def _cleanup(args: argparse.Namespace, out) -> int:
    return commands.cleanup(_context(args, out), args.server, dry_run=args.dry_run)


def _schedule(args: argparse.Namespace, out) -> int:
    request = _load(args.request)
    # Checked before anything is read from AWS: a bad request or time changes nothing.
    commands.validated(request)
    commands.schedule_time(args.at, args.timezone)
    return commands.schedule(_context(args, out), request, args.at, args.timezone)


# -- plumbing -------------------------------------------------------------------------------------------------


def _context(args: argparse.Namespace, out) -> Context:
    if getattr(args, "sandbox", False):
        raise UsageError("--sandbox runs start and preflight only: the sandbox lives as long as one command")
    session = boto3.Session(profile_name=args.profile, region_name=args.region)
    given = {name: getattr(args, name) for name in ("state_machine_arn", "ledger_table", "approval_table",
                                                    "scheduler_role_arn", "rollback_function") if getattr(args, name)}
    return Context(session, Stack(session, name=args.stack, given=given), out=out, json=args.json)


def _sandboxed(args: argparse.Namespace, out, request: Any, run) -> int:
    from mgncutover import sandbox_backend

    world = _load(args.world) if args.world else None
    commands.validated(request)
    with sandbox_backend.opened(request, world, out, args.json) as (sandbox, ctx):
        return run(ctx, sandbox)


def _interval(args: argparse.Namespace, default: float) -> float:
    return default if args.interval is None else max(0.0, args.interval)


def _load(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except ValueError as err:
        raise UsageError(f"{path}: not JSON ({err})") from None
