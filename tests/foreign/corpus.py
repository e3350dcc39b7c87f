"""Crafted foreign inputs: run directories, reproducer bundles, LAVA exports and
logs, a damaged results store, each as an attacker would write it.

Every entry crafts its files in a `Lab` (a scratch directory with its own
rig.yaml, cache and results) and names the command that reads them. `check`
runs it and says whether the rig answered as it must: exit 2, one error line
naming the file and the field, no canary file created (the payloads try to
create one), nothing written outside the output directory, and the results
store holding what it held before plus the good inputs given beside the bad.

tests/unit/test_foreign_inputs.py asserts every entry; scripts/reliability.py
reports them beside its fault findings.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import os
import shlex
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator import cli, image, store
from orchestrator.config import QemuConfig
from orchestrator.targets.qemu import qemu_command

REPO = Path(__file__).resolve().parents[2]
KERNEL = "b922307a"
RUN_ID = "20260101-000000"
GOOD_ID = "20260102-000000"
CANARY = "CANARY"
EXIT_BAD_INPUT = 2


@dataclass
class Answer:
    code: int
    out: str
    err: str


class Lab:
    """A scratch rig: rig.yaml, a cache holding one kernel and initramfs, results/,
    and incoming/ where crafted inputs are written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.cache, self.results = root / "cache", root / "results"
        self.incoming, self.canary = root / "incoming", root / CANARY
        doc = yaml.safe_load((REPO / "rig.yaml").read_text())
        doc.update(cache_dir=str(self.cache), results_dir=str(self.results))
        (root / "images").symlink_to(REPO / "images")
        self.config = root / "rig.yaml"
        self.config.write_text(yaml.safe_dump(doc))
        self.image = self.cache / "kernels" / KERNEL / "Image"
        self.initramfs = self.cache / "initramfs" / "host.cpio"
        self.image.parent.mkdir(parents=True)
        self.image.write_bytes(b"a kernel image\n")
        self.initramfs.parent.mkdir(parents=True)
        buffer = io.BytesIO()
        image.write_cpio([image.Entry("init", stat.S_IFREG | 0o755, b"#!/bin/sh\n")], buffer)
        self.initramfs.write_bytes(buffer.getvalue())
        self.results.mkdir()
        self.incoming.mkdir()

    # -- a well-formed run, as `orchestrator run` writes it ----------------------------

    def payload(self, what: str) -> str:
        """Shell that would create the canary if it ever ran."""
        return {"subst": f"$(touch {self.canary})", "backtick": f"`touch {self.canary}`",
                "semicolon": f"x; touch {self.canary}"}[what]

    @staticmethod
    def cases(kernel: str = KERNEL) -> list[dict[str, Any]]:
        base = {"suite": "kvm-host", "kernel": kernel, "verdict": "pass", "reason": "",
                "rule": None, "expected": "", "measurement": None, "duration": 1.0,
                "log": f"{kernel}/boot.console.log", "rerun": "", "details": {}}
        return [
            {**base, "id": "kvm-host/dev-kvm", "outcome": {"kind": "dev-kvm", "present": True}},
            {**base, "id": "latency/sbi-in-kernel", "suite": "latency",
             "outcome": {"kind": "figure"},
             "measurement": {"value": 100.0, "unit": "instructions", "method": "exact",
                             "samples": [[100.0]]}}]

    def manifest(self, kernel: str = KERNEL) -> dict[str, Any]:
        command = qemu_command(QemuConfig(), self.image, self.initramfs,
                               self.results / "boot.pid")
        return {"rig_version": "0.1.0", "config": str(self.config), "host": "lab",
                "only": None, "reproduce": "orchestrator run",
                "finished": "2026-12-02T12:00:00Z",
                "qemu": {"version": "QEMU 10", "cpu": "rv64", "machine": "virt", "smp": 2,
                         "icount": None},
                "suites": {},
                "kernels": {kernel: {"key": "k1", "source": "debian:linux-source-6.12",
                                     "patches": {}, "config_sha256": "c", "toolchain": "t",
                                     "targets": {"boot": {"suites": ["kvm-host", "latency"],
                                                          "qemu_command": shlex.join(command)}}}}}

    def run_dir(self, run_id: str = RUN_ID, results: Any = None, manifest: Any = None,
                raw_results: str | None = None, raw_manifest: str | None = None,
                parent: Path | None = None) -> Path:
        """A run directory (default: well-formed); results/manifest replace the JSON
        written, raw_* the text."""
        directory = (parent or self.incoming) / run_id
        directory.mkdir(parents=True)
        if results is None:
            results = {"schema_version": 1, "run_id": run_id, "cases": self.cases()}
        (directory / "results.json").write_text(
            raw_results if raw_results is not None else json.dumps(results))
        (directory / "manifest.json").write_text(
            raw_manifest if raw_manifest is not None else json.dumps(
                self.manifest() if manifest is None else manifest))
        return directory

    # -- a well-formed LAVA export and job log, as `lava export` and lava-run write them --

    LAVA_KERNEL = "lab-k"  # not a kernel of rig.yaml: the import builds nothing for it

    def plan(self, kernel: str = LAVA_KERNEL) -> dict[str, Any]:
        qemu = dataclasses.asdict(QemuConfig())
        boot = {"index": 1, "group": "boot", "qemu": dict(qemu),
                "suites": {"kvm-host": ["kvm-host/hypervisor-extension", "kvm-host/dev-kvm"]},
                "commands": [{"id": 1, "suite": "kvm-host", "timeout": 300.0, "retry_of": None,
                              "command": "test -c /dev/kvm && ls -l /dev/kvm"}]}
        return {"rig_version": "0.1.0", "config": str(self.config), "only": None,
                "qemu": qemu, "exported": "2026-01-01T00:00:00+00:00",
                "suites": {"kvm-host": {"enabled": True}},
                "kernels": {kernel: {"build": {"name": kernel, "key": "k1", "source": "s",
                                               "patches": {}, "config_sha256": "c",
                                               "toolchain": "t"},
                                     "boots": [boot], "skipped": {}}}}

    def recorded_plan(self) -> dict[str, Any]:
        """plan.json of a job recorded as `lava export` records it, for suites whose
        judging reads the programs' records (counters, isolation, latency)."""
        from orchestrator import config
        from orchestrator.lava import jobs
        from orchestrator.suites.counters import Counters, CountersConfig
        from orchestrator.suites.isolation import Isolation, IsolationConfig
        from orchestrator.suites.kvm_host import KvmHost
        from orchestrator.suites.latency import Latency, LatencyConfig

        suites = [KvmHost(KvmHost.Config()), Counters(CountersConfig(scounteren=(0x0, 0x7))),
                  Isolation(IsolationConfig(perf_user_access=(0, 2), exits=60)),
                  Latency(LatencyConfig(tests=("sbi-in-kernel",), windows=5))]
        boots, skipped = jobs.record_boots(config.load(self.config), suites,
                                           {s.name: s.plan() for s in suites}, self.root)
        plan = self.plan()
        plan["suites"] = json.loads(json.dumps({s.name: dataclasses.asdict(s.cfg)
                                                for s in suites}))
        plan["kernels"][self.LAVA_KERNEL].update(
            boots=json.loads(json.dumps([b.to_json() for b in boots])), skipped=skipped)
        return plan

    @staticmethod
    def console() -> list[str]:
        return ["[    0.3] kvm [1]: hypervisor extension available", "RIG-LAVA-BOOT 1",
                "RIG-CMD-BEGIN 1", "crw-rw---- 1 root kvm 10, 232 /dev/kvm",
                "RIG-CMD-END 1 0 1.00 1.20 done", "RIG-LAVA-DONE 1"]

    @staticmethod
    def job_log(console: list[str], extra: list[str] = ()) -> str:
        """A job log as lava-run writes it: one flow mapping per line."""
        def entry(level: str, message: object, **more: str) -> str:
            return "- " + json.dumps({"dt": "2026-01-01T00:00:00", "lvl": level,
                                      "msg": message, **more})
        return "\n".join([
            entry("debug", "start: 2.1.1 execute-qemu (timeout 00:02:00) [boot-1]"),
            entry("info", "Boot command: qemu-system-riscv64 -x"),
            *(entry("target", line.replace('"', '\\"')) for line in console), *extra,
            entry("results", {"definition": "lava", "case": "job", "result": "pass"})]) + "\n"

    def lava_export(self, plan: Any = None, raw_plan: str | None = None,
                    log: str | None = None, kernel: str = LAVA_KERNEL,
                    name: str = "export") -> Path:
        directory = self.incoming / name
        (directory / "logs").mkdir(parents=True)
        (directory / "plan.json").write_text(
            raw_plan if raw_plan is not None else json.dumps(
                self.plan() if plan is None else plan))
        if kernel:
            (directory / "logs" / f"{kernel}.yaml").write_text(
                self.job_log(self.console()) if log is None else log)
        return directory

    # -- running and watching ----------------------------------------------------------

    def orchestrator(self, *argv: str) -> Answer:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["-c", str(self.config), *argv])
        return Answer(code, out.getvalue(), err.getvalue())

    def files_outside(self, output: Path) -> dict[str, tuple[int, int]]:
        """Every file of the lab but those under output: path -> (size, mtime)."""
        found = {}
        for directory, dirs, files in os.walk(self.root):
            here = Path(directory)
            if here == output or output in here.parents:
                dirs.clear()
                continue
            for name in files + [d for d in dirs if (here / d).is_symlink()]:
                path = here / name
                info = path.lstat()
                found[str(path.relative_to(self.root))] = (info.st_size, info.st_mtime_ns)
        return found

    def stored(self) -> dict[str, int]:
        """Run id -> number of cases, as the results store holds them (read raw)."""
        path = store.path_for(self.results)
        if not path.exists():
            return {}
        with contextlib.closing(sqlite3.connect(path)) as db:
            try:
                return dict(db.execute("SELECT run_id, (SELECT count(*) FROM cases WHERE run"
                                       " = runs.id) FROM runs"))
            except sqlite3.DatabaseError:
                return {"(unreadable)": -1}


@dataclass
class Crafted:
    name: str
    command: str  # import, reproduce, compare, lava import, trend
    craft: Callable[[Lab], list[str]]  # writes the input, returns the command's arguments
    expected: str  # in the error line
    good_beside: bool = False  # a good run follows the bad one on the command line


@dataclass
class Finding:
    name: str
    command: str
    code: int
    line: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(entry: Crafted, root: Path) -> Finding:
    lab = Lab(root)
    argv = entry.craft(lab)
    if entry.good_beside:
        argv.append(str(lab.run_dir(GOOD_ID)))
    before_files, before_store = lab.files_outside(lab.results), lab.stored()
    answer = lab.orchestrator(*argv)
    lines = answer.err.splitlines()
    finding = Finding(entry.name, entry.command, answer.code, lines[0] if lines else "")
    problems = finding.problems
    if answer.code != EXIT_BAD_INPUT:
        problems.append(f"exit {answer.code}, expected {EXIT_BAD_INPUT}")
    if len(lines) != 1 or not lines[0].startswith("orchestrator: error: "):
        problems.append(f"{len(lines)} error lines: {answer.err[:300]!r}")
    elif entry.expected not in lines[0] or len(lines[0]) > 600:
        problems.append(f"the line does not say {entry.expected!r}")
    for script in root.rglob("run.sh"):  # a bundle was written: what would it run?
        subprocess.run(["sh", str(script)], env={"QEMU": "true", "PATH": os.environ["PATH"],
                                                 "TIMEOUT": "5"},
                       capture_output=True, timeout=60, cwd=root)
    if any(p.name == CANARY for p in [*root.rglob("*"), Path.cwd() / CANARY] if p.exists()):
        problems.append("the canary was created: foreign text ran as a command")
    after_files = lab.files_outside(lab.results)
    changed = sorted(k for k in after_files.keys() | before_files.keys()
                     if after_files.get(k) != before_files.get(k))
    if changed:
        problems.append(f"written outside {lab.results}: {', '.join(changed[:5])}")
    outside = [p for p in root.parent.iterdir() if p != root]
    if outside:
        problems.append(f"created beside the lab: {', '.join(map(str, outside[:5]))}")
    expected_store = dict(before_store)
    if entry.good_beside:
        expected_store[GOOD_ID] = len(lab.cases())
    if entry.command != "trend" and lab.stored() != expected_store and before_store != {
            "(unreadable)": -1}:
        problems.append(f"store {before_store} became {lab.stored()}")
    return finding


# -- the corpus -------------------------------------------------------------------------


def _edit_case(key: str, value: Any, index: int = 0) -> Callable[[Lab], dict]:
    def results(lab: Lab) -> dict:
        cases = lab.cases()
        cases[index] = {**cases[index], key: value}
        return {"schema_version": 1, "run_id": RUN_ID, "cases": cases}
    return results


def _renamed(lab: Lab, kernel: str) -> tuple[dict, dict]:
    """results.json and manifest.json of a run whose kernel is called `kernel`."""
    return ({"schema_version": 1, "run_id": RUN_ID, "cases": lab.cases(kernel)},
            lab.manifest(kernel))


def _import(**run: Any) -> Callable[[Lab], list[str]]:
    def craft(lab: Lab) -> list[str]:
        resolved = {k: v(lab) if callable(v) else v for k, v in run.items()}
        return ["import", str(lab.run_dir(**resolved))]
    return craft


def _reproduce(case: str = "kvm-host/dev-kvm", **run: Any) -> Callable[[Lab], list[str]]:
    def craft(lab: Lab) -> list[str]:
        resolved = {k: v(lab) if callable(v) else v for k, v in run.items()}
        return ["reproduce", case, "--run", str(lab.run_dir(**resolved))]
    return craft


def _manifest_with(edit: Callable[[Lab, dict], None]) -> Callable[[Lab], dict]:
    def manifest(lab: Lab) -> dict:
        doc = copy.deepcopy(lab.manifest())
        edit(lab, doc)
        return doc
    return manifest


def _command(lab: Lab, doc: dict, replace: Callable[[Lab, list[str]], list[str]]) -> None:
    target = doc["kernels"][KERNEL]["targets"]["boot"]
    target["qemu_command"] = shlex.join(replace(lab, shlex.split(target["qemu_command"])))


def _option(name: str, value: Callable[[Lab], str]) -> Callable[[Lab, dict], None]:
    def edit(lab: Lab, doc: dict) -> None:
        def replace(lab: Lab, args: list[str]) -> list[str]:
            args[args.index(name) + 1] = value(lab)
            return args
        _command(lab, doc, replace)
    return edit


def _extra_args(*extra: str) -> Callable[[Lab, dict], None]:
    def edit(lab: Lab, doc: dict) -> None:
        _command(lab, doc, lambda lab, args: args + [a.replace("CANARY", str(lab.canary))
                                                     for a in extra])
    return edit


def _damaged_store(lab: Lab) -> list[str]:
    """A store with one run, then 4 KiB of random bytes in the middle of the file."""
    good = lab.run_dir(GOOD_ID, parent=lab.results)
    assert lab.orchestrator("import", str(good)).code == 0
    path = store.path_for(lab.results)
    with sqlite3.connect(path) as db:  # the WAL into the main file, then the damage
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))
    return ["trend"]


def _same_id_elsewhere(lab: Lab) -> list[str]:
    first = lab.run_dir(RUN_ID)
    assert lab.orchestrator("import", str(first)).code == 0
    other = lab.run_dir(RUN_ID, parent=lab.root / "elsewhere",
                        results={"schema_version": 1, "run_id": RUN_ID,
                                 "cases": lab.cases()[:1]})
    return ["import", str(other)]


def _plan_kernel(lab: Lab, name: str) -> dict:
    plan = lab.plan()
    plan["kernels"] = {name: plan["kernels"][Lab.LAVA_KERNEL]}
    return plan


def _plan_boot(lab: Lab, **changes: Any) -> dict:
    """plan.json with the first boot changed (None: the key left out; qemu: merged)."""
    plan = lab.plan()
    boot = plan["kernels"][Lab.LAVA_KERNEL]["boots"][0]
    for key, value in changes.items():
        if value is None:
            del boot[key]
        elif key == "qemu":
            boot["qemu"].update(value)
        else:
            boot[key] = value
    return plan


def _lava(**export: Any) -> Callable[[Lab], list[str]]:
    def craft(lab: Lab) -> list[str]:
        resolved = {k: v(lab) if callable(v) else v for k, v in export.items()}
        return ["lava", "import", str(lab.lava_export(**resolved))]
    return craft


def _fifo(run_dir: Path, name: str) -> Path:
    (run_dir / name).unlink()
    os.mkfifo(run_dir / name)
    return run_dir


def _link(run_dir: Path, name: str, to: str) -> Path:
    (run_dir / name).unlink()
    (run_dir / name).symlink_to(to)
    return run_dir


CORPUS: list[Crafted] = [
    # reproduce: shell, paths and the suite configuration from a crafted run
    Crafted("verdict with $(...)", "reproduce",
            _reproduce(results=lambda lab: _edit_case("verdict", lab.payload("subst"))(lab)),
            "results.json: cases[0].verdict: got '$(touch"),
    Crafted("kernel with backticks", "reproduce",
            _reproduce(results=lambda lab: _renamed(lab, lab.payload("backtick"))[0],
                       manifest=lambda lab: _renamed(lab, lab.payload("backtick"))[1]),
            "results.json: cases[0].kernel: got '`touch"),
    Crafted("kernel climbing out", "reproduce",
            _reproduce(results=lambda lab: _renamed(lab, "x/../../..")[0],
                       manifest=lambda lab: _renamed(lab, "x/../../..")[1]),
            "cases[0].kernel: got 'x/../../..', expected a name"),
    Crafted("run directory named $(...)", "reproduce",
            lambda lab: ["reproduce", "kvm-host/dev-kvm", "--run",
                         str(lab.run_dir("$(touch CANARY)"))],
            "the run id (the directory's name): got '$(touch CANARY)'"),
    Crafted("-kernel /etc/passwd", "reproduce",
            _reproduce(manifest=_manifest_with(_option("-kernel", lambda lab: "/etc/passwd"))),
            "-kernel: '/etc/passwd' is outside"),
    Crafted("-initrd outside the cache", "reproduce",
            _reproduce(manifest=_manifest_with(_option("-initrd",
                                                       lambda lab: str(lab.config)))),
            "-initrd: "),
    Crafted("-kernel climbing out of the cache", "reproduce",
            _reproduce(manifest=_manifest_with(_option(
                "-kernel", lambda lab: str(lab.cache / ".." / "rig.yaml")))),
            "is outside"),
    Crafted("qemu option that runs a program", "reproduce",
            _reproduce(manifest=_manifest_with(_extra_args(
                "-netdev", "tap,id=n,script=CANARY"))),
            "option '-netdev' is not one the rig's QEMU command has"),
    Crafted("qemu -machine with a property list", "reproduce",
            _reproduce(manifest=_manifest_with(_option("-M", lambda lab: "virt;touch x"))),
            "-M 'virt;touch x' is not a value the rig writes"),
    Crafted("qemu command unbalanced", "reproduce",
            _reproduce(manifest=_manifest_with(lambda lab, doc: doc["kernels"][KERNEL]
                                               ["targets"]["boot"].update(
                                                   qemu_command="qemu 'open"))),
            "qemu_command: not a command line"),
    Crafted("suite configuration unchecked", "reproduce",
            _reproduce(manifest=_manifest_with(lambda lab, doc: doc["suites"].update(
                {"kvm-host": {"enabled": lab.payload("subst")}}))),
            "manifest.json: suites.kvm-host.enabled: got '$(touch"),
    Crafted("manifest kernels a list", "reproduce",
            _reproduce(manifest=_manifest_with(lambda lab, doc: doc.update(kernels=[]))),
            "manifest.json: kernels: got [], expected type"),
    # import: wrong types, odd numbers, a run id twice
    Crafted("measurement 'abc'", "import",
            _import(results=_edit_case("measurement", {"value": "abc", "unit": "ns",
                                                       "method": "exact", "samples": []}, 1)),
            "cases[1].measurement.value: got 'abc', expected type 'number'", good_beside=True),
    Crafted("manifest []", "import", _import(raw_manifest="[]"),
            "manifest.json: (top level): got [], expected type", good_beside=True),
    Crafted("manifest kernel an integer", "import",
            _import(raw_manifest=json.dumps({"kernels": {"k": 5}})),
            "manifest.json: kernels.k: got 5, expected type", good_beside=True),
    Crafted("cases ['abc']", "import",
            _import(results={"schema_version": 1, "run_id": RUN_ID, "cases": ["abc"]}),
            "results.json: cases[0]: got 'abc', expected type", good_beside=True),
    Crafted("duration NaN", "import",
            _import(raw_results=json.dumps({"schema_version": 1, "run_id": RUN_ID, "cases": [
                {**Lab.cases()[0], "duration": float("nan")}
            ]})),
            "results.json: not valid JSON: NaN is not a JSON number", good_beside=True),
    Crafted("value 10**30", "import",
            _import(raw_results=json.dumps({"schema_version": 1, "run_id": RUN_ID, "cases": [
                {**Lab.cases()[1],
                 "measurement": {"value": 10**30, "unit": "ns", "method": "exact",
                                 "samples": []}}]})),
            "does not fit 64 bits", good_beside=True),
    Crafted("results nested 100000 deep", "import",
            _import(raw_results="[" * 100000 + "]" * 100000),
            "nested deeper than 64 levels", good_beside=True),
    Crafted("results.json a FIFO", "import",
            lambda lab: ["import", str(_fifo(lab.run_dir(), "results.json"))],
            "results.json: not a regular file", good_beside=True),
    Crafted("results.json a link out of the run", "import",
            lambda lab: ["import", str(_link(lab.run_dir(), "results.json", "/etc/passwd"))],
            "results.json: '/", good_beside=True),
    Crafted("case id with a newline", "import",
            _import(results=_edit_case("id", "kvm-host/x\nok 2 injected")),
            "cases[0].id: got 'kvm-host/x\\nok 2 injected'", good_beside=True),
    Crafted("case id ending in a newline", "import",
            _import(results=_edit_case("id", "kvm-host/x\n")),
            "cases[0].id: got 'kvm-host/x\\n'", good_beside=True),
    Crafted("same run id from another directory", "import", _same_id_elsewhere,
            f"run id {RUN_ID} is already stored from", good_beside=True),
    Crafted("4 KiB of noise in rig.sqlite", "trend", _damaged_store,
            "the results store is damaged"),
    # lava import: plan.json and job logs
    Crafted("plan kernel an absolute path", "lava import",
            _lava(plan=lambda lab: _plan_kernel(lab, "/abs/path"), kernel=""),
            "plan.json: kernels: got '/abs/path', expected a name"),
    Crafted("plan kernel climbing out", "lava import",
            _lava(plan=lambda lab: _plan_kernel(lab, "../../x"), kernel=""),
            "plan.json: kernels: got '../../x', expected a name"),
    Crafted("plan.json []", "lava import", _lava(raw_plan="[]"),
            "plan.json: (top level): got [], expected type"),
    Crafted("plan.json without kernels", "lava import",
            _lava(plan=lambda lab: {**lab.plan(), "kernels": {}}),
            "plan.json: kernels: got {}, expected minProperties 1"),
    Crafted("boot without group", "lava import",
            _lava(plan=lambda lab: _plan_boot(lab, group=None)),
            f"plan.json: kernels.{Lab.LAVA_KERNEL}.boots[0]: 'group' is required"),
    Crafted("boot group climbing out", "lava import",
            _lava(plan=lambda lab: _plan_boot(lab, group="../../x")),
            f"plan.json: kernels.{Lab.LAVA_KERNEL}.boots[0].group: got '../../x'"),
    Crafted("boot machine with a shell", "lava import",
            _lava(plan=lambda lab: _plan_boot(lab, qemu={"machine": "virt;touch CANARY"})),
            f"plan.json: kernels.{Lab.LAVA_KERNEL}.boots[0].qemu.machine: got"),
    Crafted("boot memory not a size", "lava import",
            _lava(plan=lambda lab: _plan_boot(lab, qemu={"memory": "lots"})),
            f"plan.json: kernels.{Lab.LAVA_KERNEL}.boots[0].qemu.memory: got 'lots'"),
    Crafted("plan suite configuration unchecked", "lava import",
            _lava(plan=lambda lab: {**lab.plan(), "suites": {"kvm-host": {"enabled": "yes"}}}),
            "plan.json: suites.kvm-host.enabled: got 'yes', expected true or false"),
    Crafted("suite unknown", "lava import",
            _lava(plan=lambda lab: {**lab.plan(), "suites": {"rm-rf": {}}}),
            "plan.json: suites: no suite 'rm-rf' in this rig"),
    Crafted("command id of 18 digits", "lava import",
            _lava(plan=lambda lab: _plan_boot(lab, commands=[{
                "id": int("9" * 18), "suite": "kvm-host", "command": "true", "timeout": 1.0,
                "retry_of": None}])),
            "commands[0].id: got 999999999999999999, expected maximum"),
    Crafted("RIG-CMD-END with 1.2.3", "lava import",
            _lava(log=lambda lab: lab.job_log(
                [line.replace("1.20 done", "1.2.3 done") for line in lab.console()])),
            f"logs/{Lab.LAVA_KERNEL}.yaml: line 7: 'RIG-CMD-END 1 0 1.00 1.2.3 done': not the"
            " end of a command"),
    Crafted("log line not an entry", "lava import",
            _lava(log=lambda lab: lab.job_log(lab.console()) + "- {unclosed: [\n"),
            f"logs/{Lab.LAVA_KERNEL}.yaml: line 10: not a LAVA log entry"),
    Crafted("log line nested 100000 deep", "lava import",
            _lava(log=lambda lab: lab.job_log(lab.console()) + "- {a: " + "[" * 100000
                  + "]" * 100000 + "}\n"),
            f"logs/{Lab.LAVA_KERNEL}.yaml: line 10: not a LAVA log entry"),
    Crafted("log a link out of the export", "lava import",
            lambda lab: ["lava", "import", str(_link(lab.lava_export(), f"logs/{Lab.LAVA_KERNEL}"
                                                                         ".yaml", "/etc/passwd"))],
            ".yaml: '/"),
    Crafted("log a FIFO", "lava import",
            lambda lab: ["lava", "import", str(_fifo(lab.lava_export(),
                                                     f"logs/{Lab.LAVA_KERNEL}.yaml"))],
            ".yaml: not a regular file"),
]

