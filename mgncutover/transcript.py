"""Writes docs/watch.md: a recorded `watch` of the five-server wave in the sandbox, start to end.

    python -m mgncutover.transcript

The times are the rehearsal's simulated time; tests/cli/test_transcript.py checks the recording's form.
"""

from __future__ import annotations

import io

from mgncutover import ROOT, cli

COMMAND = ["--sandbox", "start", "events/five-server-wave.json", "--watch", "--plain"]
DOCUMENT = ROOT / "docs" / "watch.md"

INTRO = """# Watching a wave

What `watch` prints without a terminal (a pipe, CI, or `--plain`): a line each time a server enters
a new step or ends, with the time since the watch began, then the final table and the progress bar.
On a terminal the same table is redrawn in place instead; `--json` prints one JSON object per change.

Recorded from the sandbox with `python -m mgncutover.transcript` (times are the sandbox's simulated time, as AWS would take them):
"""


def record() -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(COMMAND), out=out)
    return code, out.getvalue()


def document(code: int, output: str) -> str:
    return (f"{INTRO}\n```\n$ ./scripts/cutover {' '.join(COMMAND)}\n{output.rstrip()}\n$ echo $?\n{code}\n```\n")


def main() -> int:
    code, output = record()
    DOCUMENT.write_text(document(code, output))
    print(f"wrote {DOCUMENT.relative_to(ROOT)} (the wave's exit code: {code})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
