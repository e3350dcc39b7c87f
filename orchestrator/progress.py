"""Progress lines and logged subprocesses for long work (builds, downloads).

On a terminal one status line is redrawn in place: the current step, the
elapsed time and the last line the tool printed. Elsewhere (CI logs) a
line is printed when a step starts and then every `heartbeat` seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from orchestrator.errors import TAIL_LINES, InfraError


class TimedOut(InfraError):
    """A logged step ran past its timeout and was killed."""


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class Progress:
    def __init__(self, label: str, stream: TextIO = sys.stderr, heartbeat: float = 30.0) -> None:
        self.label = label
        self.stream = stream
        self.tty = stream.isatty()
        self.heartbeat = heartbeat
        self.step = ""
        self.detail = ""
        self.started = time.monotonic()
        self.step_started = self.started
        self._last_print = 0.0
        self._lock = threading.Lock()

    def begin(self, step: str) -> None:
        with self._lock:
            self.step, self.detail = step, ""
            self.step_started = time.monotonic()
            if not self.tty:
                self._write(f"[{self.label}] {step}")
                self._last_print = time.monotonic()
        self.update()

    def update(self, detail: str | None = None) -> None:
        with self._lock:
            if detail is not None:
                self.detail = detail.strip()
            now = time.monotonic()
            line = f"[{self.label}] {self.step} {clock(now - self.step_started)}"
            if self.tty:
                width = os.get_terminal_size(self.stream.fileno()).columns - 1
                text = f"{line}  {self.detail}" if self.detail else line
                self.stream.write("\r\x1b[K" + text[:width])
                self.stream.flush()
            elif now - self._last_print >= self.heartbeat:
                self._write(f"{line}  {self.detail}".rstrip())
                self._last_print = now

    def done(self, message: str) -> None:
        with self._lock:
            if self.tty:
                self.stream.write("\r\x1b[K")
            self._write(f"[{self.label}] {message}")

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def run_logged(
    cmd: list[str],
    log: Path,
    progress: Progress,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> None:
    """Run cmd, appending its output to log and showing it on the progress line.

    Raises InfraError naming the step and the log, with the log's tail, when
    cmd fails or runs longer than timeout seconds (it is then killed).
    """
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(cmd)}\n")
        sink.flush()
        try:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, errors="replace", bufsize=1,
            )
        except FileNotFoundError:
            raise InfraError(f"{progress.step}: command not found: {cmd[0]}"
                             " (run 'orchestrator setup')") from None
        ticker = _Ticker(progress)
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            proc.kill()

        watchdog = threading.Timer(timeout, expire) if timeout else None
        if watchdog:
            watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sink.write(line)
                tail.append(line.rstrip("\n"))
                progress.update(line)
            rc = proc.wait()
        finally:
            ticker.stop()
            if watchdog:
                watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if timed_out.is_set():
        raise TimedOut(f"{progress.label}: {progress.step} timed out after {timeout:g}s"
                         f" (timeouts.build); full log: {log}", details="\n".join(tail))
    if rc != 0:
        raise InfraError(
            f"{progress.label}: {progress.step} failed (exit {rc}); full log: {log}",
            details="\n".join(tail),
        )


class _Ticker:
    """Redraws the progress line once a second while a quiet tool runs."""

    def __init__(self, progress: Progress) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(progress,), daemon=True)
        self._thread.start()

    def _run(self, progress: Progress) -> None:
        while not self._stop.wait(1.0):
            progress.update()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
