"""Cold-start figures: how long each handler module takes to import, as a ratio to a bare
`import boto3` measured in the same run.

A Lambda cold start pays for every import of the handler module. boto3 is the floor (every
function needs it); anything far above it is an import worth moving to where it is used. Each
figure is the median of several fresh interpreters, and only the ratios are compared, since
the machines this runs on are shared and noisy.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from sandbox.template import ROOT, functions, load

_PROBE = "import time; started = time.perf_counter(); import {module}; print(time.perf_counter() - started)"


def import_seconds(module: str, runs: int) -> float:
    """Median wall time of `import module` in a fresh interpreter, over `runs` interpreters."""
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)], cwd=ROOT / "functions",
                              capture_output=True, text=True, check=True,
                              env={"PATH": "", "POWERTOOLS_TRACE_DISABLED": "false", "AWS_DEFAULT_REGION": "us-east-1"})
        times.append(float(done.stdout.strip()))
    return statistics.median(times)


def handler_modules() -> list[str]:
    return sorted({fn.handler.rsplit(".", 1)[0] for fn in functions(load()).values()})


def import_ratios(runs: int = 5) -> list[tuple[str, float, float]]:
    """(module, seconds, ratio to bare boto3) for boto3 itself and every handler module."""
    floor = import_seconds("boto3", runs)
    rows = [("boto3", floor, 1.0)]
    for module in handler_modules():
        seconds = import_seconds(module, runs)
        rows.append((module, seconds, seconds / floor))
    return rows


def print_import_ratios(runs: int = 5, out=sys.stdout) -> list[tuple[str, float, float]]:
    rows = import_ratios(runs)
    print(f"{'module':<40}{'import ms':>10}{'x boto3':>9}", file=out)
    for module, seconds, ratio in rows:
        print(f"{module:<40}{seconds * 1000:>10.0f}{ratio:>9.2f}", file=out)
    return rows


if __name__ == "__main__":
    print_import_ratios(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
