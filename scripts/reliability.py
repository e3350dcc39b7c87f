"""The rig against a hostile machine: for each fault, what the rig did and
whether anything was lost. A report of findings, run by hand or by the test
suite (tests/integration/test_reliability.py asserts every finding is ok).

    .venv/bin/python scripts/reliability.py [-c rig.yaml] [--only FAULT]... [--seed N]

Faults: a signal (SIGINT, SIGTERM, SIGHUP) at a random point of a run;
kill -9 mid-run, then a rerun; two runs at once; a run while a CPU hog keeps
every core busy; each kind of cache entry corrupted; a full disk under
results/; and crafted foreign inputs (tests/foreign/corpus.py: run directories,
bundles, LAVA exports and logs, a damaged store), each of which must be refused
with exit 2 and one line, nothing run, nothing written outside results/. Runs
use a reduced copy of the rig description (two SCOUNTEREN values, one short
isolation run, one short latency boot) on one kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
KERNEL = "b922307a"
EXIT_INTERRUPTED = {130, 128 + signal.SIGTERM}


@dataclass
class Finding:
    fault: str
    did: str  # what the rig did
    lost: str  # what was lost ("" = nothing)
    ok: bool


class Lab:
    """A scratch directory with a reduced rig description and helpers to run it."""

    def __init__(self, base: Path, root: Path) -> None:
        self.root = root
        doc = yaml.safe_load(base.read_text())
        for kernel in doc["kernels"]:
            kernel["patches"] = [str((base.parent / p).resolve()) for p in kernel["patches"]]
            kernel["config"] = [str((base.parent / p).resolve()) for p in kernel["config"]]
        doc["suites"] = {
            "counters": {"scounteren": [0x0, 0x7]},
            "isolation": {"perf_user_access": [1], "exits": 300, "migrate": False},
            "latency": {"boots": 1, "windows": 50},
            "kselftest-kvm": {"enabled": False},
            "linux-guest": {"enabled": False},
            # how many deadlines a put/load source costs depends on the machine's load:
            # a run beside busy loops must judge like an idle one
            "timer": {"enabled": False},
        }
        self.doc = doc
        self.reference_seconds: float | None = None

    def config(self, name: str, **top: object) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**self.doc, "results_dir": str(self.root / name),
                                        **top}))
        return path

    def start(self, config: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "-c", str(config), "run", "--kernel", KERNEL],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})}, start_new_session=True)

    def run(self, config: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        proc = self.start(config, env)
        out, err = proc.communicate(timeout=1800)
        return proc.returncode, out, err


def qemu_left(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "qemu-system" in cmdline and marker in cmdline:
                found.append(int(entry.name))
    return found


def run_dir(results: Path) -> Path | None:
    dirs = [p for p in results.glob("*") if p.is_dir() and not p.is_symlink()
            ] if results.is_dir() else []
    return dirs[0] if len(dirs) == 1 else None


def jsonl_cases(directory: Path) -> tuple[list[dict], int]:
    """The cases in results.jsonl and the number of torn (unparseable) lines."""
    path = directory / "results.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    cases, torn = [], 0
    for line in lines:
        try:
            cases.append(json.loads(line))
        except ValueError:
            torn += 1
    return cases, torn


def verdicts(directory: Path) -> dict[str, object]:
    """Case id -> verdict, and measurement value where there is one."""
    cases = json.loads((directory / "results.json").read_text())["cases"]
    return {c["id"]: (c["verdict"], (c["measurement"] or {}).get("value")) for c in cases}


# -- the faults ---------------------------------------------------------------------


def run_seconds(lab: Lab) -> float:
    """How long the reduced run takes here and now: random points fall inside it."""
    if lab.reference_seconds is None:
        started = time.monotonic()
        lab.run(lab.config("reference"))
        lab.reference_seconds = time.monotonic() - started
    return lab.reference_seconds


def random_point(lab: Lab, rng: random.Random) -> float:
    """A point inside the run, away from both ends by 3 s or, for a run shorter than
    12 s (a warm reduced run takes about 5), a quarter of its length."""
    length = run_seconds(lab)
    margin = min(3.0, length / 4)
    return rng.uniform(margin, length - margin)


def signal_at_random_point(lab: Lab, rng: random.Random) -> list[Finding]:
    findings = []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        name = f"signal-{signum.name}"
        config = lab.config(name)
        delay = random_point(lab, rng)
        proc = lab.start(config)
        time.sleep(delay)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=300)
        directory = run_dir(lab.root / name)
        cases, torn = jsonl_cases(directory) if directory else ([], 0)
        final = json.loads((directory / "results.json").read_text())["cases"] \
            if directory and (directory / "results.json").is_file() else []
        left = qemu_left(str(lab.root / name))
        lost = []
        if torn:
            lost.append(f"{torn} torn line(s) in results.jsonl")
        if directory and [c["id"] for c in final] != [c["id"] for c in cases]:
            lost.append(f"results.json holds {len(final)} of the {len(cases)} recorded cases")
        if left:
            lost.append(f"QEMU left running: {left}")
        findings.append(Finding(
            f"{signum.name} {delay:.1f}s into a run",
            f"exit {proc.returncode}, {len(cases)} case(s) on disk, '{err.strip()[-80:]}'",
            "; ".join(lost), proc.returncode in EXIT_INTERRUPTED and not lost))
    return findings


def kill_9_then_rerun(lab: Lab, rng: random.Random) -> list[Finding]:
    config = lab.config("kill9")
    delay = random_point(lab, rng)
    proc = lab.start(config)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)  # the orchestrator alone: its QEMU must not outlive it
    proc.communicate(timeout=60)
    directory = run_dir(lab.root / "kill9")
    cases, torn = jsonl_cases(directory) if directory else ([], 0)
    code, _, err = lab.run(config)
    lost = f"{torn} torn line(s)" if torn > 1 else ""  # the line being written may tear
    return [Finding(f"kill -9 {delay:.1f}s into a run, then the same run again",
                    f"{len(cases)} case(s) on disk from the killed run; the rerun exited {code}",
                    lost, code == 0 and not lost and not qemu_left(str(lab.root / "kill9")))]


def two_runs_at_once(lab: Lab, rng: random.Random) -> list[Finding]:
    configs = [lab.config(f"concurrent-{i}") for i in (1, 2)]
    procs = [lab.start(c) for c in configs]
    codes = [p.wait(timeout=1800) for p in procs]
    results = [verdicts(run_dir(lab.root / f"concurrent-{i}")) for i in (1, 2)]
    same = results[0] == results[1]
    return [Finding("two runs at once, sharing the cache", f"exits {codes}; verdicts and"
                    f" icount figures {'identical' if same else 'DIFFER'}", "",
                    codes == [0, 0] and same)]


def cpu_hog(lab: Lab, rng: random.Random) -> list[Finding]:
    reference = lab.config("hog-reference")
    lab.run(reference)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)]
    try:
        code, _, _ = lab.run(lab.config("hog"))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    same = verdicts(run_dir(lab.root / "hog")) == verdicts(run_dir(lab.root / "hog-reference"))
    return [Finding(f"a run while {len(hogs)} busy loops keep every core busy",
                    f"exit {code}; verdicts and icount figures"
                    f" {'as on an idle machine' if same else 'DIFFER from an idle run'}", "",
                    code == 0 and same)]


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[:len(data) // 2])
    else:  # flip bytes in the middle
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64])
                         + data[middle + 64:])


def corrupted_cache(lab: Lab, rng: random.Random) -> list[Finding]:
    """Each kind of cache entry damaged in the real cache: detected and rebuilt."""
    sys.path.insert(0, str(REPO))
    from orchestrator import config as rig_config

    probe = lab.config("cache-probe")
    cache = rig_config.load(probe).cache_dir
    built = subprocess.run([sys.executable, "-m", "orchestrator", "-c", str(probe), "build",
                            "--json", KERNEL], cwd=REPO, capture_output=True, text=True)
    image = Path(json.loads(built.stdout)[0]["image"])
    kinds: dict[str, Callable[[], list[Path]]] = {
        "kernel Image": lambda: [image],
        "initramfs": lambda: sorted(cache.glob("initramfs/host-*.cpio")),
        "busybox": lambda: sorted(p for p in cache.glob("initramfs/busybox-*")
                                  if p.suffix != ".sha256"),
        "busybox .deb": lambda: sorted(cache.glob("apt-riscv64/debs/busybox-static_*.deb")),
    }
    findings = []
    for kind, paths in kinds.items():
        found = paths()
        if not found:
            findings.append(Finding(f"corrupted {kind}", "nothing of that kind in the cache",
                                    "", False))
            continue
        for path in found:
            _corrupt(path, rng.choice(["truncate", "flip"]))
        name = "cache-" + kind.replace(" ", "-").replace(".", "")
        code, _, err = lab.run(lab.config(name))
        healed = all(p.is_file() for p in paths()) and code == 0
        warned = "[cache]" in err
        findings.append(Finding(f"corrupted {kind} ({len(found)} file(s))",
                                f"exit {code}; " + ("warned and rebuilt" if warned
                                                    else "rebuilt without a warning")
                                + ("" if code == 0 else f": {err.strip()[-300:]}"),
                                "", healed and warned))
    return findings


def full_disk(lab: Lab, rng: random.Random) -> list[Finding]:
    mount = lab.root / "full"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        return [Finding("a full disk under results/", "not run: cannot mount a small tmpfs"
                        f" ({mounted.stderr.strip()})", "", True)]
    try:
        config = lab.config("full-disk", results_dir=str(mount))
        code, _, err = lab.run(config)
        directory = run_dir(mount)
        cases, torn = jsonl_cases(directory) if directory else ([], 0)
        lines = err.strip().splitlines()
        leftovers = list(directory.glob("*.partial")) if directory else []
        lost = []
        if torn > 1:
            lost.append(f"{torn} torn lines")
        if leftovers:
            lost.append(f"left behind: {[p.name for p in leftovers]}")
        return [Finding("a full disk under results/ (96 KiB tmpfs)",
                        f"exit {code}: '{lines[-1] if lines else ''}'; {len(cases)} case(s)"
                        " readable", "; ".join(lost),
                        code == 3 and bool(cases) and not lost
                        and lines[-1].startswith("orchestrator: error: ")
                        and not qemu_left(str(lab.root)))]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def foreign_inputs(lab: Lab, rng: random.Random) -> list[Finding]:
    """Each crafted input of the corpus, in a scratch rig of its own."""
    sys.path.insert(0, str(REPO))
    from tests.foreign import corpus

    findings = []
    for entry in corpus.CORPUS:
        with tempfile.TemporaryDirectory(prefix="rig-foreign-") as scratch:
            found = corpus.check(entry, Path(scratch) / "lab")
        findings.append(Finding(f"foreign input, {entry.command}: {entry.name}",
                                f"exit {found.code}: {found.line}", "; ".join(found.problems),
                                found.ok))
    return findings


FAULTS: dict[str, Callable[[Lab, random.Random], list[Finding]]] = {
    "signals": signal_at_random_point,
    "kill-9": kill_9_then_rerun,
    "concurrent": two_runs_at_once,
    "cpu-hog": cpu_hog,
    "cache": corrupted_cache,
    "full-disk": full_disk,
    "foreign": foreign_inputs,
}


def check(base: Path, names: list[str], seed: int) -> Iterator[Finding]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="rig-reliability-") as scratch:
        lab = Lab(base, Path(scratch))
        for name in names:
            yield from FAULTS[name](lab, rng)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, default=REPO / "rig.yaml")
    parser.add_argument("--only", action="append", choices=sorted(FAULTS))
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    print(f"seed {args.seed}", flush=True)
    findings = []
    for f in check(args.config.resolve(), args.only or list(FAULTS), args.seed):
        print(f"{'ok  ' if f.ok else 'BAD '} {f.fault}\n       did: {f.did}\n"
              f"       lost: {f.lost or 'nothing'}", flush=True)
        findings.append(f)
    bad = sum(not f.ok for f in findings)
    print(f"{len(findings) - bad} of {len(findings)} faults handled")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
