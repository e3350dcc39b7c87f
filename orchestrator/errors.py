"""Error kinds and the exit codes they map to (documented in the README).

0 success, 1 test failures, 2 bad input or usage, 3 infrastructure error,
130 interrupted.
Anything the user can fix in rig.yaml, a patch or the command line is bad
input; anything that went wrong building, booting or running is
infrastructure. A test verdict is never an exception.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_TEST_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INFRA = 3
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGTERM, SIGHUP (as a shell reports SIGINT)


class RigError(Exception):
    """An error with a one-line message and an exit code.

    `details` is shown after the one-line message (e.g. a log tail).
    """

    exit_code = EXIT_INFRA

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadInput(RigError):
    exit_code = EXIT_BAD_INPUT


class InfraError(RigError):
    exit_code = EXIT_INFRA


TAIL_LINES = 30


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last lines of a command's output or a log, cut at a line boundary."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
