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
    BadInput,
    RigError,
)
from orchestrator.lava import export as lava_export
from orchestrator.lava import replay as lava_replay
from orchestrator.suites import Suite, registry
from orchestrator.targets import kinds, open_target
from orchestrator.targets.qemu import QemuBoot, QemuTarget, console_tail, qemu_for, share_args
from orchestrator.targets.ssh import SshEntry, emulated
from orchestrator.targets.ssh.connection import SshTarget

CONSOLE_CONTEXT_LINES = 40


def _load(args: argparse.Namespace) -> config.RigConfig:
    rig = config.load(args.config)
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
    if args.json:
        print(json.dumps({"kernels": [k.name for k in planned.kernels],
                          "suites": planned.cases}, indent=2))
    else:
        for cid in planned.ids():
            print(cid)
        print(f"{len(planned.ids())} case(s) on each of {len(planned.kernels)} kernel(s):"
              f" {', '.join(k.name for k in planned.kernels)}", file=sys.stderr)
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
            return candidate
    looked = dict.fromkeys(str(c / "results.json") for c in (Path(given), rig.results_dir / given))
    raise BadInput(f"{given}: no run there (no {' nor '.join(looked)})")


def _run_kernels(run_dir: Path) -> dict[str, dict]:
    """The manifest's kernels of a run (name -> build record), {} if it has none."""
    try:
        kernels = json.loads((run_dir / "manifest.json").read_text()).get("kernels", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return kernels if isinstance(kernels, dict) else {}


def _sides(run_dir: Path) -> dict[str, Side]:
    try:
        cases = results.load_cases(run_dir)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{run_dir / 'results.json'}: not a run's results ({exc})") from None
    kernels = _run_kernels(run_dir)
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
    cases = [c for pair in pairs for side in pair for c in side.cases]
    kernels = {f"{run.name}:{name}": entry for run in (dir_a, dir_b)
               for name, entry in _run_kernels(run).items()}
    comparisons = report.write(out, f"{dir_b.name} against {dir_a.name}", cases, pairs,
                               kernels, expectations.explainer)
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
        cases = results.load_cases(run_dir)
        run_code = results.exit_code(cases)
    else:
        record = runner.run(rig)
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
    print("\n".join(nightly.summary(found)))
    if args.squad:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        for line in squad.publish(args.squad, run_dir.name, cases, manifest):
            print(line)
    code = nightly.exit_code(run_code, found, rig.nightly)
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
                (d for d in given.glob("*") if (d / "manifest.json").is_file()),
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


def cmd_lava_import(args: argparse.Namespace) -> int:
    record = lava_replay.import_run(_load(args), args.dir)
    print(report.summary_table(record.cases))
    code = record.exit_code()
    print(f"results: {record.dir} (exit {code})")
    return code


@dataclasses.dataclass(frozen=True)
class Subcommand:
    """One subcommand: its name, help, arguments (argparse's flags and options), and the
    function it runs, or its own subcommands."""

    name: str
    help: str
    args: tuple[tuple[tuple[str, ...], dict], ...] = ()
    func: Callable[[argparse.Namespace], int] | None = None
    usage: str | None = None
    actions: tuple[Subcommand, ...] = ()


def arg(*flags: str, **options: object) -> tuple[tuple[str, ...], dict]:
    return flags, options


ONLY_KERNEL = arg("--kernel", action="append", metavar="KERNEL",
                  help="only this kernel (repeatable)")
SUBCOMMANDS = (
    Subcommand("setup", "install the system and Python packages the rig needs", (
        arg("--dry-run", action="store_true", help="only say what would be installed"),
        arg("--lava", action="store_true", help="also the LAVA dispatcher (lava-run), to run"
            " exported jobs on this machine")), cmd_setup),
    Subcommand("build", "build kernels (cached by content)", (
        arg("kernels", nargs="*", metavar="KERNEL", help="default: every kernel"),
        arg("--json", action="store_true", help="print name, key, paths, seconds as JSON")),
        cmd_build),
    Subcommand("boot", "boot a kernel, run one command in the host, exit with its status;"
               " or (--ssh) keep it running, reachable over SSH", (
        arg("kernel", metavar="KERNEL"),
        arg("--timeout", type=float, help="seconds for the command (default: rig.yaml)"),
        arg("--ssh", action="store_true", help="start dropbear in the host, forward a port of"
            " 127.0.0.1 to it, print the ssh command and a rig.yaml target entry; run until"
            " Ctrl-C")), cmd_boot,
        usage="orchestrator boot [-h] [--timeout S] KERNEL -- CMD...\n"
              "       orchestrator boot --ssh KERNEL"),
    Subcommand("shell", "boot a kernel and give an interactive host console", (
        arg("kernel", metavar="KERNEL"),
        arg("--guest", action="store_true", help="start the guest a suite runs under KVM in the"
            " host (linux-guest's Linux guest) and give its console instead")), cmd_shell),
    Subcommand("list", "the case ids a run would run, known before it starts", (
        ONLY_KERNEL, arg("--only", metavar="GLOB", help="only case ids matching GLOB"),
        arg("--json", action="store_true", help="kernels and case ids per suite as JSON")),
        cmd_list),
    Subcommand("run", "build, boot and check every kernel; write results/", (
        ONLY_KERNEL,
        arg("--only", metavar="GLOB", help="only the cases whose id matches GLOB (e.g. a case"
            " id printed with a failure, or 'counters/pmu/VU/*'); prints their records and the"
            " console"),
        arg("--target", metavar="NAME", help="a rig.yaml target: qemu (default: build and boot"
            " the kernels) or a standing one, e.g. ssh (run on the host it names, as it is)")),
        cmd_run),
    Subcommand("compare", "compare two runs: latency A/B and counter differences; writes"
               " report.md, compare.json, latency.png", (
        arg("run_a", metavar="RUN_A", help="a run directory or run id (the baseline)"),
        arg("run_b", metavar="RUN_B", help="a run directory or run id"),
        arg("--pair", action="append", metavar="KERNEL_A=KERNEL_B",
            help="compare these two kernels (repeatable); default: the kernels of the same"
                 " name, else both runs' kernels in order")), cmd_compare),
    Subcommand("bisect", "git bisect a kernel tree with the rig as the judge", (
        arg("--tree", type=Path, help="the kernel git work tree (left as found)"),
        arg("--good", metavar="REF"), arg("--bad", metavar="REF"),
        arg("--check", metavar="PREDICATE", help="a suite (e.g. isolation), a case id or glob,"
            " or latency:TEST>+N (instructions, icount) / latency:TEST>xR (wallclock)"),
        arg("--resume", metavar="BISECT_ID", help="carry on an interrupted bisect")),
        cmd_bisect),
    Subcommand("history", "make a kernel git history: linux-source-6.12, then a commit per"
               " patch (for bisect, or without a clone)", (
        arg("dest", type=Path, metavar="DEST", help="the new git tree"),
        arg("patches", type=Path, nargs="*", metavar="PATCH",
            help="further commits, after the kernel's own patches"),
        arg("--kernel", help="whose patches come first (default: the last kernel)")),
        cmd_history),
    Subcommand("nightly", "the default run, then what changed since the previous run"
               " (report.md, changes.json, trend.png)", (
        arg("--from", dest="from_run", metavar="RUN",
            help="compare this stored run instead of running (a run id or directory)"),
        arg("--squad", metavar="URL", help="also publish to this SQUAD project"
            f" (http(s)://HOST/GROUP/PROJECT; token in ${squad.TOKEN_ENV})")), cmd_nightly),
    Subcommand("import", "load run directories into the results store", (
        arg("dirs", type=Path, nargs="+", metavar="DIR",
            help="a run directory, or a results directory holding runs"),), cmd_import),
    Subcommand("trend", "each measurement per kernel over the last runs", (
        arg("--last", type=int, metavar="N", help="runs (default: nightly.trend_runs)"),
        arg("--json", action="store_true")), cmd_trend),
    Subcommand("reproduce", "a bundle that reruns one case with only QEMU", (
        arg("case", metavar="CASE", help="a case id (as in results.json)"),
        arg("--run", metavar="RUN",
            help="a run id or directory (default: the newest run holding CASE)"),
        arg("--kernel", metavar="KERNEL", help="the kernel, when the run has several"),
        arg("--out", type=Path, metavar="DIR", help="default: results/reproduce-KERNEL-CASE"),
        arg("--tar", action="store_true", help="also pack it as DIR.tar.gz")), cmd_reproduce),
    Subcommand("lava", "the run as LAVA jobs (export), their logs as a run (import)", actions=(
        Subcommand("export", "one LAVA job per kernel, with its artifacts", (
            arg("outdir", type=Path, metavar="OUTDIR"),
            arg("--kernel", action="append", metavar="K", help="only this kernel (repeat)"),
            arg("--only", metavar="GLOB", help="only the case ids matching GLOB"),
            arg("--base-url", metavar="URL", help="where the lab fetches OUTDIR's files"
                " (default: file:// paths, for a worker on this machine)"),
            arg("--device-type", default="qemu", help="the lab's device type (default qemu)"),
            arg("--tag", action="append", metavar="TAG", help="a device tag jobs need")),
            cmd_lava_export),
        Subcommand("import", "judge the jobs' logs (DIR/logs/KERNEL.yaml); write a run under"
                   " results/", (arg("dir", type=Path, metavar="DIR", help="the export's OUTDIR"),),
                   cmd_lava_import))),
)


def _add(sub: argparse._SubParsersAction, command: Subcommand) -> None:
    parser = sub.add_parser(command.name, help=command.help, usage=command.usage)
    for flags, options in command.args:
        parser.add_argument(*flags, **options)
    if command.actions:
        actions = parser.add_subparsers(dest=f"{command.name}_command", required=True,
                                        metavar="ACTION")
        for action in command.actions:
            _add(actions, action)
    else:
        parser.set_defaults(func=command.func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Build RISC-V KVM host kernels, boot them under QEMU and test them.",
        epilog="exit codes: 0 success, 1 test failures, 2 bad input or usage, "
               "3 infrastructure error, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", type=Path, default=os.environ.get("RIG_CONFIG"),
                        help="the rig description (default: $RIG_CONFIG, else ./rig.yaml,"
                             " else the rig's embedded default)")
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
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
        return args.func(args)
    except RigError as exc:
        if exc.details:
            print(exc.details, file=sys.stderr)
        print(f"orchestrator: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("orchestrator: interrupted; QEMU stopped, results kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # e.g. a full disk: the environment, not the tests
        print(f"orchestrator: error: {exc.strerror or exc}"
              + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return EXIT_INFRA
    except Exception as exc:  # a bug of the rig: never read as a test failure
        log = Path(tempfile.gettempdir()) / f"orchestrator-crash-{os.getpid()}.log"
        log.write_text(traceback.format_exc())
        print(f"orchestrator: internal error: {type(exc).__name__}: {str(exc)[:200]}"
              f" (traceback in {log})", file=sys.stderr)
        return EXIT_INFRA
