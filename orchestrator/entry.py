"""The `orchestrator` command's entry point.

Signals are taken over before anything heavy is imported (the CLI pulls in
numpy, scipy and matplotlib, which takes seconds): SIGTERM and SIGHUP unwind
like Ctrl-C, so an interrupt at any moment exits 130 and stops every QEMU.
"""

from __future__ import annotations

import signal
import sys

from orchestrator.errors import EXIT_INTERRUPTED


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        from orchestrator import cli

        return cli.main()
    except KeyboardInterrupt:  # before the CLI could handle it
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
