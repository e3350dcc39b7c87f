"""The `orchestrator` command: a thin layer over the modules.

Exit codes (README): 0 success, 1 test failures, 2 bad input or usage,
3 infrastructure error (build failure, panic, timeout, missing tool),
130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from orchestrator import (
    __version__,
    bisect,
    config,
    expectations,
    guest,
    history,
    kernel,
    nightly,
    plan,
    provision,
    report,
    reproduce,
    results,
    runner,
    squad,
    store,
)
from orchestrator.budget import Budget
from orchestrator.compare import Side, by_kernel
from orchestrator.errors import (
    EXIT_BAD_INPUT,
    EXIT_INFRA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TEST_FAILURE,
    BadInput,
    RigError,
)
from orchestrator.lava import export as lava_export
from orchestrator.lava import replay as lava_replay
from orchestrator.lava import submit as lava_submit
from orchestrator.suites import Suite, registry
from orchestrator.targets import kinds, open_target
from orchestrator.targets.qemu import QemuBoot, QemuTarget, console_tail, qemu_for, share_args
from orchestrator.targets.ssh import SshEntry, emulated
from orchestrator.targets.ssh.connection import SshTarget

CONSOLE_CONTEXT_LINES = 40
# the status of a command that SIGPIPE ended: what a pipeline's reader expects
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def _load(args: argparse.Namespace) -> config.RigConfig:
    rig = config.load(args.config)
    if args.results_dir is not None:
        rig = dataclasses.replace(rig, results_dir=args.results_dir.resolve())
    if args.func is not cmd_list:  # every other command writes the cache or results
        rig.check_directories()
    return rig


def cmd_setup(args: argparse.Namespace) -> int:
    return provision.setup(dry_run=args.dry_run, lava=args.lava)


def cmd_build(args: argparse.Namespace) -> int:
    rig = _load(args)
    specs = [rig.kernel(n) for n in args.kernels] if args.kernels else list(rig.kernels)
    built = [kernel.build(rig, spec) for spec in specs]
    if args.json:
        print(json.dumps([k.to_json() for k in built], indent=2))
    else:
        for k in built:
            state = "cached" if k.cached else "built"
            print(f"{k.name}: {state}, key {k.key[:16]}, {k.build_seconds:.0f}s, {k.image}")
    return EXIT_OK


def _boot(args: argparse.Namespace, extra_append: str = "",
          ssh_entry: list[SshEntry] | None = None,
          suite: Suite | None = None, rig: config.RigConfig | None = None) -> QemuTarget:
    """Boot args.kernel; with ssh_entry (a list to fill), reachable over SSH too; with
    suite, on the machine that suite's needs give (rig.yaml's settings), its share
    mounted."""
    rig = rig or _load(args)
    spec = rig.kernel(args.kernel)
    built = kernel.build(rig, spec)
    initramfs = guest.host_initramfs(rig.cache_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    timeouts = rig.timeouts
    if getattr(args, "timeout", None):
        timeouts = dataclasses.replace(timeouts, command=args.timeout)
    boot_name = f"{args.kernel}-{stamp}-{os.getpid()}"
    extra_args: tuple[str, ...] = ()
    machine = rig.qemu
    if suite is not None:
        machine = qemu_for(suite.needs(), rig.qemu)
        share = suite.host_share(rig, spec)
        extra_args = share_args({suite.name: share} if share else {})
    if ssh_entry is not None:
        initramfs, extra_args, entry = emulated.prepare(
            rig.cache_dir, initramfs, rig.results_dir / "boots" / f"{boot_name}-ssh",
            f"{args.kernel}-ssh")
        ssh_entry.append(entry)
        extra_append = " ".join(filter(None, (extra_append, emulated.KERNEL_ARG)))
    boot = QemuBoot(boot_name, machine, built.image, initramfs, label=args.kernel,
                    extra_append=extra_append, extra_args=extra_args)
    target: QemuTarget = open_target(boot, rig.results_dir / "boots", Budget(timeouts), rig)
    print(f"[{args.kernel}] booting; console log: {target.console_log}", file=sys.stderr)
    try:
        seconds = target.boot()
    except BaseException:
        target.close()
        raise
    print(f"[{args.kernel}] ready in {seconds:.1f}s: {target.ready_line}", file=sys.stderr)
    return target


def cmd_boot_ssh(args: argparse.Namespace) -> int:
    if args.command:
        raise BadInput("boot --ssh: takes no command; use the ssh command it prints")
    # Ctrl-C ends it, even when started where SIGINT is ignored (a script's `&`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    entries: list[SshEntry] = []
    with _boot(args, ssh_entry=entries) as target:
        entry = entries[0]
        snippet = entry.key_file.parent / "target.yaml"
        snippet.write_text(emulated.entry_yaml(entry))
        print(f"[{args.kernel}] host key {emulated.fingerprint(entry.known_hosts)}",
              file=sys.stderr)
        print(SshTarget(entry, entry.key_file.parent, target.budget).ssh_command())
        print(f"rig.yaml target entry: {snippet}")
        print("Ctrl-C stops the host", file=sys.stderr)
        sys.stdout.flush()
        target.wait()
    print(f"[{args.kernel}] the host stopped (QEMU exited)", file=sys.stderr)
    return EXIT_OK


def cmd_boot(args: argparse.Namespace) -> int:
    if args.ssh:
        return cmd_boot_ssh(args)
    if not args.command:
        raise BadInput("boot: give a command after '--', e.g. boot KERNEL -- uname -a")
    with _boot(args) as target:
        command = args.command
        result = target.run(shlex.join(command) if len(command) > 1 else command[0])
    sys.stdout.write(result.output)
    return result.status


def cmd_shell(args: argparse.Namespace) -> int:
    if args.guest:
        return _guest_shell(args)
    with _boot(args, extra_append="rig.shell") as target:
        print("host shell: Ctrl-] to leave (QEMU is then stopped)", file=sys.stderr)
        target.interact()
    return EXIT_OK


def _guest_shell(args: argparse.Namespace) -> int:
    """The guest of the suite that runs one, started in the host, its console handed over."""
    rig = _load(args)
    name = next((name for name, cls in registry().items() if cls.has_guest_shell()), None)
    if name is None:
        raise BadInput("shell --guest: no suite starts a guest in the host")
    suite = registry()[name](rig.suites[name])
    with _boot(args, suite=suite, rig=rig) as target:
        leave = suite.start_guest_shell(target)
        print(f"guest shell: {leave}, Ctrl-] leaves (QEMU is then stopped)", file=sys.stderr)
        target.interact()
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    rig = _load(args)
    planned = plan.make(rig, args.kernel, args.only)
    found_later = {s.name: s.found_at_run_time for s in planned.suites if s.found_at_run_time}
    if args.json:
        print(json.dumps({"kernels": [k.name for k in planned.kernels],
                          "suites": planned.cases, "found_at_run_time": found_later}, indent=2))
    else:
        for cid in planned.ids():
            print(cid)
        print(f"{len(planned.ids())} case(s) on each of {len(planned.kernels)} kernel(s):"
              f" {', '.join(k.name for k in planned.kernels)}", file=sys.stderr)
        for name, what in found_later.items():
            print(f"{name}: a run adds the cases it finds as it runs: {what}", file=sys.stderr)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    rig = _load(args)
    if args.target and rig.target(args.target):
        if args.kernel:
            raise BadInput(f"run --target {args.target}: a {rig.target(args.target).type} target"
                           " runs the kernel it has; --kernel does not apply")
        record = runner.run_target(rig, rig.target(args.target), args.only)
        args.kernel = [args.target]
    else:
        record = runner.run(rig, args.kernel, args.only)
    if args.json:
        summary = report.run_summary(record.dir, record.cases, record.exit_code())
        compared = record.dir / "compare.json"
        if compared.is_file():
            summary["comparisons"] = json.loads(compared.read_text())
        print(json.dumps(summary, indent=1))
        return summary["exit_code"]
    if args.only:
        for case in record.cases:
            print(json.dumps(case.to_json(), indent=2))
        for name in args.kernel or [k.name for k in rig.kernels]:
            log, what = record.console_log(name), "console"
            if args.target and (entry := rig.target(args.target)):
                kind = kinds()[entry.type]
                log, what = kind.session_log(entry, log.parent), kind.session
            print(f"--- {what} of {name}, last {CONSOLE_CONTEXT_LINES} lines ---")
            print(console_tail(log, CONSOLE_CONTEXT_LINES))
    print(report.summary_table(record.cases))
    compared = record.dir / "compare.json"
    if compared.is_file():
        print("\n".join(report.headline(json.loads(compared.read_text()))))
    peak = record.manifest["peak_rss_mib"]
    print(f"peak memory: orchestrator {peak['orchestrator']:.0f} MiB,"
          f" largest child process (QEMU) {peak['qemu']:.0f} MiB")
    for case in record.cases:
        if case.rerun:
            print(f"{case.verdict}: {case.kernel} {case.id}: {case.reason}\n"
                  f"  rerun: {case.rerun}")
    code = record.exit_code()
    print(f"results: {record.dir} (exit {code})")
    return code


def _run_dir(rig: config.RigConfig, given: str) -> Path:
    """A run's directory, given as a path or as a run id under results/."""
    for candidate in (Path(given), rig.results_dir / given):
        if (candidate / "results.json").is_file():
            return candidate.resolve()  # results/latest: the run it points at
    looked = dict.fromkeys(str(c / "results.json") for c in (Path(given), rig.results_dir / given))
    raise BadInput(f"{given}: no run there (no {' nor '.join(looked)})")


def _sides(run_dir: Path) -> dict[str, Side]:
    cases = results.load_cases(run_dir)  # foreign input: BadInput names file and field
    kernels = results.load_manifest(run_dir).get("kernels", {})
    return {k: Side(f"{run_dir.name}:{k}", mine,
                    str((kernels.get(k) or {}).get("release") or ""))
            for k, mine in by_kernel(cases).items()
            if k and not all(c.suite == results.DIFFERS for c in mine)}


def compare_pairs(names_a: list[str], names_b: list[str], asked: list[str]
                  ) -> list[tuple[str, str]]:
    """Which kernel of run A is compared with which of run B: as asked (--pair A=B),
    else those of the same name, else the runs' kernels in order when both have as
    many (e.g. a 6.12 A/B against a 7.3 A/B)."""
    if asked:
        pairs = []
        for entry in asked:
            a, sep, b = entry.partition("=")
            if not sep or a not in names_a or b not in names_b:
                raise BadInput(f"--pair {entry}: expected KERNEL_A=KERNEL_B, one of"
                               f" {', '.join(names_a)} = one of {', '.join(names_b)}")
            pairs.append((a, b))
        return pairs
    common = [k for k in names_a if k in names_b]
    if common:
        return [(k, k) for k in common]
    if len(names_a) == len(names_b):
        return list(zip(names_a, names_b, strict=True))
    raise BadInput("compare: the runs share no kernel and hold different numbers of"
                   " kernels; name the pairs with --pair KERNEL_A=KERNEL_B")


def cmd_compare(args: argparse.Namespace) -> int:
    rig = _load(args)
    dir_a, dir_b = _run_dir(rig, args.run_a), _run_dir(rig, args.run_b)
    sides_a, sides_b = _sides(dir_a), _sides(dir_b)
    pairs = [(sides_a[a], sides_b[b])
             for a, b in compare_pairs(list(sides_a), list(sides_b), args.pair or [])]
    out = rig.results_dir / f"compare-{dir_a.name}-vs-{dir_b.name}"
    sides = list({s.label: s for pair in pairs for s in pair}.values())
    kernels = {f"{run_dir.name}:{name}": built for run_dir in (dir_a, dir_b)
               for name, built in results.load_manifest(run_dir).get("kernels", {}).items()}
    comparisons = report.write(out, f"{dir_b.name} against {dir_a.name}", sides, pairs,
                               {s.label: kernels[s.label] for s in sides if s.label in kernels},
                               expectations.explainer)
    if args.json:
        print(json.dumps({"a": str(dir_a), "b": str(dir_b), "report": str(out / "report.md"),
                          "comparisons": comparisons}, indent=1))
        return EXIT_OK
    print("\n".join(report.headline(comparisons)))
    print(f"report: {out / 'report.md'}")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    rig = _load(args)
    spec = rig.kernel(args.kernel) if args.kernel else rig.kernels[-1]
    if not isinstance(spec.source, config.DebianSource):
        raise BadInput(f"history: kernel {spec.name} is not built from a Debian source package")
    patches = [*spec.patches, *(p.resolve() for p in args.patches)]
    commits = history.make(rig, spec.source, args.dest.resolve(), patches)
    print(f"{commits[0]}  base: {spec.source.debian_package}")
    for commit, patch in zip(commits[1:], patches, strict=True):
        print(f"{commit}  {history.subject(patch)}")
    return EXIT_OK


def cmd_bisect(args: argparse.Namespace) -> int:
    rig = _load(args)
    if args.resume:
        out = rig.results_dir / args.resume
        try:
            saved = json.loads((out / "bisect.json").read_text())
        except OSError:
            raise BadInput(f"--resume {args.resume}: no bisect in {out}") from None
        tree, good, bad, check = Path(saved["tree"]), saved["good"], saved["bad"], saved["check"]
    else:
        missing = [f"--{k}" for k in ("tree", "good", "bad", "check") if not getattr(args, k)]
        if missing:
            raise BadInput(f"bisect: {', '.join(missing)} required (or --resume BISECT_ID)")
        tree, good, bad, check = args.tree.resolve(), args.good, args.bad, args.check
        out = rig.results_dir / f"bisect-{time.strftime('%Y%m%d-%H%M%S')}"
    predicate = bisect.parse_predicate(check, rig)
    if not (tree / ".git").exists():
        raise BadInput(f"--tree {tree}: not a git work tree")
    run = bisect.Bisection(rig, tree, good, bad, predicate, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bisect.json").write_text(json.dumps(
        {"tree": str(tree), "good": run.good, "bad": run.bad, "check": check}) + "\n")
    print(f"bisect {out.name}: {check} between good {run.good[:12]} and bad {run.bad[:12]};"
          f" resume with --resume {out.name}", file=sys.stderr)
    result = run.run(resume=bool(args.resume))
    steps = result["steps"]
    if result["first_bad"]:
        culprit = result["first_bad"]
        print(f"first bad commit: {culprit} {result['subjects'][culprit]}")
        print(f"  evidence: {steps[culprit]['evidence']}")
    else:
        print("the first bad commit is one of (the others could not be tested):")
        for commit in result["candidates"]:
            print(f"  {commit} {result['subjects'][commit]}")
    skipped = [c for c, s in steps.items() if s["verdict"] == bisect.SKIP]
    for commit in skipped:
        print(f"  skipped {commit[:12]}: {steps[commit]['evidence']}")
    tested = [s["seconds"] for s in steps.values()]
    print(f"{len(tested)} commits judged in {result['seconds']:.0f}s"
          f" ({sum(tested) / len(tested):.0f}s per step); details: {out / 'result.json'}")
    return EXIT_OK


def cmd_nightly(args: argparse.Namespace) -> int:
    rig = _load(args)
    if args.from_run:
        run_dir = _run_dir(rig, args.from_run)
        if not results.finished(run_dir):
            raise BadInput(f"--from {args.from_run}: run {run_dir.name} has not finished (its"
                           " manifest.json says no 'finished': still being written, or"
                           " killed); a nightly compares complete runs only")
        cases = results.load_cases(run_dir)
        run_code = results.exit_code(cases)
    else:
        record = runner.run(rig)
        if not args.json:
            print(report.summary_table(record.cases))
        run_dir, cases, run_code = record.dir, record.cases, record.exit_code()
    with store.Store(store.path_for(rig.results_dir)) as db:
        if db.run(run_dir.name) is None:  # --from a run made elsewhere, or the hook failed
            db.import_dir(run_dir)
        stored = db.run(run_dir.name)
        assert stored is not None
        found = nightly.since_previous(db, stored)
        trends = db.trend(rig.nightly.trend_runs, upto=stored)
    nightly.write(run_dir, found, trends)
    published = []
    if args.squad:
        manifest = results.load_manifest(run_dir)
        published = squad.publish(args.squad, run_dir.name, cases, manifest)
    code = nightly.exit_code(run_code, found, rig.nightly)
    if args.json:
        print(json.dumps({**report.run_summary(run_dir, cases, code), "run_exit_code": run_code,
                          "fail_on": list(rig.nightly.fail_on),
                          "changes": nightly.to_json(found), "squad": published}, indent=1))
        return code
    print("\n".join([*nightly.summary(found), *published]))
    print(f"report: {run_dir / 'report.md'}")
    print(f"results: {run_dir} (exit {code}: fail_on {', '.join(rig.nightly.fail_on)})")
    return code


def cmd_import(args: argparse.Namespace) -> int:
    rig = _load(args)
    bad = []
    with store.Store(store.path_for(rig.results_dir)) as db:
        for given in args.dirs:
            # a results directory stands for the runs in it, oldest first
            runs = [given] if (given / "manifest.json").is_file() else sorted(
                (d for d in given.glob("*")
                 if (d / "manifest.json").is_file() and not d.is_symlink()),
                key=lambda d: (d / "manifest.json").stat().st_mtime)
            if not runs:
                bad.append(f"{given}: no run directory (manifest.json) there")
            for run_dir in runs:
                try:
                    added = db.import_dir(run_dir)
                except BadInput as exc:
                    bad.append(exc.message)
                    continue
                print(f"{run_dir.name}: {'imported' if added else 'already stored'}")
    for message in bad:
        print(f"orchestrator: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else EXIT_OK


def cmd_forget(args: argparse.Namespace) -> int:
    rig = _load(args)
    with store.Store(store.path_for(rig.results_dir)) as db:
        for run_id in args.runs:
            stored = db.forget(run_id)
            print(f"{run_id}: forgotten (its directory {stored.dir} is left as it is)")
    return EXIT_OK


def cmd_trend(args: argparse.Namespace) -> int:
    rig = _load(args)
    with store.Store(store.path_for(rig.results_dir)) as db:
        trends = db.trend(args.last or rig.nightly.trend_runs)
    if args.json:
        print(json.dumps(trends, indent=1))
        return EXIT_OK
    for t in trends:
        figures = ", ".join(f"{p['run']} {p['value']:g}" for p in t["points"])
        print(f"{t['kernel']} {t['case']} ({t['unit']}, {t['method']}):"
              f" {len(t['points'])} point(s): {figures}")
    if not trends:
        print(f"no measurement in the results store {store.path_for(rig.results_dir)}")
    return EXIT_OK


def cmd_reproduce(args: argparse.Namespace) -> int:
    rig = _load(args)
    run_dir = _run_dir(rig, args.run) if args.run else None
    out = reproduce.bundle(rig, args.case, args.kernel, run_dir,
                           args.out.resolve() if args.out else None, args.tar)
    print(f"bundle: {out}")
    print("rerun it anywhere with qemu-system-riscv64:"
          f" {'tar xzf ' + out.name + ' && ' if args.tar else ''}"
          f"{out.name.removesuffix('.tar.gz')}/run.sh")
    return EXIT_OK


def cmd_lava_export(args: argparse.Namespace) -> int:
    rig = _load(args)
    jobs = lava_export.export(rig, args.outdir.resolve(), args.kernel, args.only, args.base_url,
                       args.device_type, args.tag)
    for job in jobs:
        print(f"job: {job}")
    print(f"artifacts: {args.outdir / 'artifacts'} (SHA256SUMS)")
    print(f"device for lava-run: {args.outdir / lava_export.DEVICE_FILE}")
    return EXIT_OK


def cmd_lava_submit(args: argparse.Namespace) -> int:
    rig = _load(args)
    server = lava_submit.server_from(args.server, args.identity, dict(os.environ))
    record, jobs, _ = lava_submit.run(rig, server, args.outdir, args.kernel, args.only,
                                      args.base_url, args.device_type, args.tag, args.poll)
    code = _lava_summary(record)
    # a job the server ended Incomplete or Canceled is an infrastructure error even when
    # its host had reported every case before the end reached the worker
    ended = [job.error for job in jobs if job.error]
    if ended and code in (EXIT_OK, EXIT_TEST_FAILURE):
        print(f"lava submit: exit {EXIT_INFRA}: {'; '.join(ended)}", file=sys.stderr)
        return EXIT_INFRA
    return code


def cmd_lava_import(args: argparse.Namespace) -> int:
    return _lava_summary(lava_replay.import_run(_load(args), args.dir))


def _lava_summary(record: results.RunRecord) -> int:
    print(report.summary_table(record.cases))
    code = record.exit_code()
    print(f"results: {record.dir} (exit {code})")
    return code


# Each subcommand's exit codes, as its --help lists them.
_FAILED = "1 a case failed (a test failure, not an infrastructure one)"
_BAD = "2 bad input or usage (rig.yaml, arguments, a run that is not one)"
_INFRA = "3 infrastructure error (build failure, panic, timeout, missing tool, internal)"
_STOPPED = "130 interrupted (results gathered so far are kept)"
_RAN = "0 every case passed, was skipped or is a known deviation"


@dataclasses.dataclass(frozen=True)
class Subcommand:
    """One subcommand: its name, help (its summary, and with `details` its --help's
    description), its exit codes, arguments (argparse's flags and options), and the
    function it runs, or its own subcommands."""

    name: str
    help: str
    exits: tuple[str, ...]
    args: tuple[tuple[tuple[str, ...], dict], ...] = ()
    func: Callable[[argparse.Namespace], int] | None = None
    usage: str | None = None
    actions: tuple[Subcommand, ...] = ()
    details: str = ""


def arg(*flags: str, **options: object) -> tuple[tuple[str, ...], dict]:
    return flags, options


def json_output(what: str) -> tuple[tuple[str, ...], dict]:
    return arg("--json", action="store_true", help=f"print {what} as JSON on stdout")


ONLY_KERNEL = arg("--kernel", action="append", metavar="KERNEL",
                  help="only this kernel (repeatable)")
ONLY_CASES = arg("--only", metavar="GLOB", help="only the case ids matching GLOB")
A_KERNEL = arg("kernel", metavar="KERNEL", help="a kernel of rig.yaml")
EXPORT_ARGS = (
    arg("outdir", type=Path, metavar="OUTDIR",
        help="where the jobs, their artifacts and the device go"),
    ONLY_KERNEL, ONLY_CASES,
    arg("--base-url", metavar="URL", help="where the lab fetches OUTDIR's files"
        " (default: file:// paths, for a worker on this machine)"),
    arg("--device-type", default="qemu", help="the lab's device type (default qemu)"),
    arg("--tag", action="append", metavar="TAG", help="a device tag jobs need (repeatable)"))
SUBCOMMANDS = (
    Subcommand("setup", "install the system and Python packages the rig needs",
               ("0 everything is installed", _BAD, _INFRA), (
        arg("--dry-run", action="store_true", help="only say what would be installed"),
        arg("--lava", action="store_true", help="also a LAVA lab's packages (lava-dispatcher,"
            " lava-server, PostgreSQL), to run exported jobs on this machine")), cmd_setup,
               details="Does nothing when all is there"),
    Subcommand("build", "build kernels (cached by content)",
               ("0 every kernel built or found in the cache", _BAD, _INFRA, _STOPPED), (
        arg("kernels", nargs="*", metavar="KERNEL", help="default: every kernel"),
        json_output("name, key, paths and seconds of each kernel")), cmd_build),
    Subcommand("boot", "boot a kernel, run one command in the host, exit with its status;"
               " or (--ssh) keep it running, reachable over SSH",
               ("N the command's own exit status (0 with --ssh once the host stops)", _BAD,
                _INFRA, _STOPPED), (
        A_KERNEL,
        arg("--timeout", type=float, help="seconds for the command (default: rig.yaml)"),
        arg("--ssh", action="store_true", help="start dropbear in the host, forward a port of"
            " 127.0.0.1 to it, print the ssh command and a rig.yaml target entry; run until"
            " Ctrl-C")), cmd_boot,
        usage="orchestrator boot [-h] [--timeout S] KERNEL -- CMD...\n"
              "       orchestrator boot --ssh KERNEL"),
    Subcommand("shell", "boot a kernel and give an interactive host console",
               ("0 the console was left (Ctrl-])", _BAD, _INFRA), (
        A_KERNEL,
        arg("--guest", action="store_true", help="start the guest a suite runs under KVM in the"
            " host (linux-guest's Linux guest) and give its console instead")), cmd_shell),
    Subcommand("list", "the case ids a run would run, known before it starts", ("0 listed", _BAD),
               (ONLY_KERNEL, ONLY_CASES,
                json_output("the kernels, the case ids per suite and what suites add as they"
                            " run")), cmd_list,
               details="A suite that finds more cases as it runs (kselftest-kvm's"
                       " get-reg-list configurations and KTAP subtests) says so"),
    Subcommand("run", "build, boot and check every kernel; write a run under results/",
               (_RAN, _FAILED, _BAD, _INFRA, _STOPPED), (
        ONLY_KERNEL,
        arg("--only", metavar="GLOB", help="only the cases whose id matches GLOB (e.g. a case"
            " id printed with a failure, or 'counters/pmu/VU/*'); prints their records and the"
            " console"),
        arg("--target", metavar="NAME", help="a rig.yaml target: qemu (default: build and boot"
            " the kernels) or a standing one, e.g. ssh (run on the host it names, as it is)"),
        json_output("a summary (run id, directory, exit code, counts per kernel, files)")),
        cmd_run, details="The run's directory is printed last (and is results/latest once it"
                         " finished)"),
    Subcommand("compare", "compare two runs: measurements A/B and behaviour differences;"
               " writes report.md, compare.json and measurements.png",
               ("0 compared (whatever the comparison found)", _BAD), (
        arg("run_a", metavar="RUN_A", help="a run directory or run id (the baseline)"),
        arg("run_b", metavar="RUN_B", help="a run directory or run id"),
        arg("--pair", action="append", metavar="KERNEL_A=KERNEL_B",
            help="compare these two kernels (repeatable); default: the kernels of the same"
                 " name, else both runs' kernels in order"),
        json_output("the comparisons and the report's path")), cmd_compare,
               details="Cases one run has and the other has not are listed as gone or new"),
    Subcommand("bisect", "git bisect a kernel tree with the rig as the judge",
               ("0 bisected (the first bad commit, or the candidates left)", _BAD, _INFRA,
                _STOPPED), (
        arg("--tree", type=Path, help="the kernel git work tree (left as found)"),
        arg("--good", metavar="REF", help="a commit where the check passes"),
        arg("--bad", metavar="REF", help="a later commit where the check fails"),
        arg("--check", metavar="PREDICATE", help="a suite (e.g. isolation), a case id or glob,"
            " or latency:TEST>+N (instructions, icount) / latency:TEST>xR (wallclock)"),
        arg("--resume", metavar="BISECT_ID", help="carry on an interrupted bisect")),
        cmd_bisect),
    Subcommand("history", "make a kernel git history: linux-source-6.12, then a commit per"
               " patch (for bisect, or without a clone)", ("0 made", _BAD, _INFRA), (
        arg("dest", type=Path, metavar="DEST", help="the new git tree"),
        arg("patches", type=Path, nargs="*", metavar="PATCH",
            help="further commits, after the kernel's own patches"),
        arg("--kernel", metavar="KERNEL",
            help="whose patches come first (default: the last kernel)")), cmd_history),
    Subcommand("nightly", "the default run, then what changed since the previous run"
               " (report.md, changes.json, trend.png)",
               ("0 nothing rig.yaml's nightly.fail_on names happened",
                "1 a change nightly.fail_on names: new-failures, slower, gone-cases",
                _BAD, _INFRA, _STOPPED), (
        arg("--from", dest="from_run", metavar="RUN",
            help="compare this finished run instead of running (a run id or directory)"),
        arg("--squad", metavar="URL", help="also publish to this SQUAD project"
            f" (http(s)://HOST/GROUP/PROJECT; token in ${squad.TOKEN_ENV})"),
        json_output("a summary (run, exit code, changes per kernel, report)")), cmd_nightly),
    Subcommand("import", "load run directories into the results store",
               ("0 every directory stored (or already there)", _BAD), (
        arg("dirs", type=Path, nargs="+", metavar="DIR",
            help="a run directory, or a results directory holding runs"),), cmd_import),
    Subcommand("forget", "remove runs from the results store (not their directories)",
               ("0 removed", _BAD), (
        arg("runs", nargs="+", metavar="RUN", help="a stored run id"),), cmd_forget),
    Subcommand("trend", "each measurement per kernel over the last runs",
               ("0 shown", _BAD, f"{EXIT_BROKEN_PIPE} stdout's reader left early (| head)"), (
        arg("--last", type=int, metavar="N", help="runs (default: nightly.trend_runs)"),
        json_output("each series (kernel, case, unit, method, points)")), cmd_trend),
    Subcommand("reproduce", "a bundle that reruns one case with only QEMU",
               ("0 bundle written", _BAD, _INFRA), (
        arg("case", metavar="CASE", help="a case id (as in results.json)"),
        arg("--run", metavar="RUN",
            help="a run id or directory (default: the newest run holding CASE)"),
        arg("--kernel", metavar="KERNEL", help="the kernel, when the run has several"),
        arg("--out", type=Path, metavar="DIR", help="default: results/reproduce-KERNEL-CASE"),
        arg("--tar", action="store_true", help="also pack it as DIR.tar.gz")), cmd_reproduce),
    Subcommand("lava", "the run as LAVA jobs (export, submit), their logs as a run (import)",
               ("as the action's --help says",), actions=(
        Subcommand("export", "one LAVA job per kernel, with its artifacts",
                   ("0 jobs written", _BAD, _INFRA), EXPORT_ARGS, cmd_lava_export),
        Subcommand("submit", "export, run the jobs on a LAVA server, follow them, fetch their"
                   " logs and import them",
                   ("0 every case passed", "1 test failures", "2 bad input, or the server"
                    " cannot be reached or refuses the token", "3 a job Incomplete or Canceled,"
                    " or another infrastructure error", _STOPPED), (
            *EXPORT_ARGS,
            arg("--server", metavar="URL", help="the LAVA server (its root, or lavacli's"
                " .../RPC2); the token comes from $LAVA_TOKEN or the lavacli identity"),
            arg("--identity", metavar="NAME", help="the lavacli identity"
                " (~/.config/lavacli.yaml; default: 'default' when needed)"),
            arg("--poll", type=float, default=5.0, metavar="SECONDS",
                help="how often to ask the server about the jobs (default 5)")),
            cmd_lava_submit),
        Subcommand("import", "judge the jobs' logs (DIR/logs/KERNEL.yaml); write a run under"
                   " results/", (_RAN, _FAILED, _BAD, _INFRA),
                   (arg("dir", type=Path, metavar="DIR", help="the export's OUTDIR"),),
                   cmd_lava_import))),
)


def _common(default: object) -> argparse.ArgumentParser:
    """-c and --results-dir, before or after the subcommand (given after it, they win)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", type=Path, default=default,
                        help="the rig description (default: $RIG_CONFIG, else ./rig.yaml,"
                             " else the rig's embedded default)")
    common.add_argument("--results-dir", type=Path, metavar="DIR", default=default,
                        help="where runs are written and read (default: rig.yaml's"
                             f" results_dir, else ${config.RESULTS_ENV}, else ./results)")
    return common


def _add(sub: argparse._SubParsersAction, command: Subcommand) -> None:
    description = command.help[0].upper() + command.help[1:] + (
        f". {command.details}." if command.details else ".")
    parser = sub.add_parser(command.name, help=command.help, usage=command.usage,
                            description=textwrap.fill(description, 79),
                            epilog="exit codes:\n  " + "\n  ".join(command.exits),
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            parents=[_common(argparse.SUPPRESS)])
    for flags, options in command.args:
        parser.add_argument(*flags, **options)
    if command.actions:
        actions = parser.add_subparsers(dest=f"{command.name}_command", required=True,
                                        metavar="ACTION", help="each has its own --help")
        for action in command.actions:
            _add(actions, action)
    else:
        parser.set_defaults(func=command.func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Build RISC-V KVM host kernels, boot them under QEMU and test them.",
        epilog="exit codes: 0 success, 1 test failures, 2 bad input or usage, "
               "3 infrastructure error, 130 interrupted (each subcommand's --help says which"
               " it uses)",
        parents=[_common(None)],
    )
    parser.set_defaults(config=os.environ.get("RIG_CONFIG"))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND",
                                help="each has its own --help")
    for command in SUBCOMMANDS:
        _add(sub, command)
    return parser


def main(argv: list[str] | None = None) -> int:
    # What follows '--' is the host command of `boot`, never an option of ours.
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = build_parser()
    args = parser.parse_args(argv[:len(argv) - len(command) - 1] if "--" in argv else argv)
    if command and args.subcommand != "boot":
        parser.error(f"'{args.subcommand}' takes no command after '--'")
    args.command = command
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a reader that left (BrokenPipeError) is caught
        return code
    except RigError as exc:
        if exc.details:
            print(exc.details, file=sys.stderr)
        print(f"orchestrator: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("orchestrator: interrupted; QEMU stopped, results kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout's reader left (| head): as quiet as a SIGPIPE death
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # e.g. a full disk: the environment, not the tests
        print(f"orchestrator: error: {exc.strerror or exc}"
              + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return EXIT_INFRA
    except Exception as exc:  # a bug of the rig: never read as a test failure
        # mkstemp: a name no other user can guess and plant a link at beforehand
        handle, name = tempfile.mkstemp(prefix="orchestrator-crash-", suffix=".log")
        with os.fdopen(handle, "w") as sink:
            sink.write(traceback.format_exc())
        log = Path(name)
        print(f"orchestrator: internal error: {type(exc).__name__}: {str(exc)[:200]}"
              f" (traceback in {log})", file=sys.stderr)
        return EXIT_INFRA
