"""Cold-start figures: how long each handler module takes to import, as a ratio to a bare
`import boto3` measured in the same run.

A Lambda cold start pays for every import of the handler module. boto3 is the floor (every
function needs it); anything far above it is an import worth moving to where it is used. Each
figure is the median over several rounds of fresh interpreters, and every round measures boto3
and every module one after the other, so a burst of load on a shared machine weighs on all of
them alike; only the ratios are compared.

Two columns: the stack as deployed by default (TraceAwsCalls=false: no X-Ray SDK), and with
TraceAwsCalls=true, which loads the X-Ray SDK in every function.

    python -m sandbox.benchmark [ROUNDS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from sandbox.template import ROOT, functions, load

_PROBE = "import time; started = time.perf_counter(); import {module}; print(time.perf_counter() - started)"
# POWERTOOLS_TRACE_DISABLED as template.yaml's Globals set it for each value of TraceAwsCalls.
DEFAULT = {"POWERTOOLS_TRACE_DISABLED": "true"}
TRACED = {"POWERTOOLS_TRACE_DISABLED": "false"}


def import_once(module: str, environment: dict[str, str]) -> float:
    """Wall time of `import module` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)], cwd=ROOT / "functions",
                          capture_output=True, text=True, check=True,
                          env={"PATH": "", "AWS_DEFAULT_REGION": "us-east-1", **environment})
    return float(done.stdout.strip())


def handler_modules() -> list[str]:
    return sorted({fn.handler.rsplit(".", 1)[0] for fn in functions(load()).values()})


def import_ratios(rounds: int = 5) -> list[tuple[str, float, float, float]]:
    """(module, default seconds, ratio to boto3, ratio to boto3 with AWS calls traced) per module."""
    modules = handler_modules()
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        samples.setdefault(("boto3", "default"), []).append(import_once("boto3", DEFAULT))
        for module in modules:
            samples.setdefault((module, "default"), []).append(import_once(module, DEFAULT))
            samples.setdefault((module, "traced"), []).append(import_once(module, TRACED))
    floor = statistics.median(samples[("boto3", "default")])
    rows = [("boto3", floor, 1.0, 1.0)]
    for module in modules:
        default = statistics.median(samples[(module, "default")])
        traced = statistics.median(samples[(module, "traced")])
        rows.append((module, default, default / floor, traced / floor))
    return rows


def print_import_ratios(rounds: int = 5, out=sys.stdout) -> list[tuple[str, float, float, float]]:
    rows = import_ratios(rounds)
    print(f"{'module':<40}{'import ms':>10}{'x boto3':>9}{'x boto3 traced':>16}", file=out)
    for module, seconds, ratio, traced in rows:
        print(f"{module:<40}{seconds * 1000:>10.0f}{ratio:>9.2f}{traced:>16.2f}", file=out)
    worst = max(rows[1:], key=lambda row: row[2])
    print(f"slowest handler import: {worst[0]} at {worst[2]:.2f}x a bare import boto3 (stack default)", file=out)
    return rows


if __name__ == "__main__":
    print_import_ratios(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
