"""`orchestrator reproduce CASE`: one case of a run as a bundle that reruns it on
any machine with qemu-system-riscv64 and a POSIX shell, without the rig.

The bundle holds:
- Image: the kernel the run booted (from the cache, by the manifest);
- initramfs.cpio: the run's own initramfs (same busybox, VMM and payloads),
  with the current /init (which knows `rig.run=PATH`) and the case's host
  script packed in as /rig-case.sh;
- case.sh: that script (the suite's `command_for`), for reading;
- qemu-command.txt: the exact QEMU command, the run's own with the kernel
  command line gaining `rig.run=/rig-case.sh`;
- run.sh: boots it, keeps the console in console.log, prints the outcome
  the host script reports and compares it with the run's;
- outcome.txt (the run's outcome as the script prints it) and case.json
  (the run's whole record of the case: verdict, expected, reason, evidence).
"""

from __future__ import annotations

import io
import json
import re
import shlex
import stat
import tarfile
from pathlib import Path

from orchestrator import guest, image, validate
from orchestrator.config import RigConfig, saved_suite_config
from orchestrator.errors import BadInput, InfraError
from orchestrator.results import DIFFERS, MANIFEST, load_cases, load_manifest
from orchestrator.suites import OUTCOME_MARK, outcome_line, registry
from orchestrator.validate import shown
from orchestrator.verdicts import Case

CASE_SCRIPT = "rig-case.sh"
RUN_TIMEOUT = 600  # seconds run.sh lets QEMU run (TIMEOUT=... overrides)

# Values from the run reach the script only as quoted assignments, never
# inside its text: a run directory is foreign input.
RUN_SH = """#!/bin/sh
# Reruns one case of a riscv-kvm-rig run (case.json has its record).
# Needs qemu-system-riscv64 (or QEMU=/path/to/it) and a POSIX shell, nothing else.
# Exit: 0 same outcome as the run, 1 a different one, 3 QEMU or the host failed.
case_id={case_id}
kernel={kernel}
run_id={run_id}
verdict={verdict}
cd "$(dirname "$0")" || exit 3
QEMU=${{QEMU:-qemu-system-riscv64}}
command -v "$QEMU" >/dev/null 2>&1 || {{ echo "run.sh: $QEMU not found" >&2; exit 3; }}
"$QEMU" {qemu_args} </dev/null >console.log 2>&1 &
qemu=$!
# the watchdog's sleep must not hold run.sh's output open once QEMU is done
( sleep "${{TIMEOUT:-{timeout}}}" & s=$!; trap 'kill $s; exit 0' TERM; wait $s
  kill "$qemu" ) >/dev/null 2>&1 &
watchdog=$!
wait "$qemu"
kill "$watchdog" 2>/dev/null
observed=$(tr -d '\\r' <console.log | sed -n 's/^{mark} //p' | tail -n 1)
expected=$(cat outcome.txt)
echo "case: $kernel $case_id"
echo "recorded outcome: $expected (verdict $verdict in run $run_id)"
if [ -z "$observed" ]; then
    echo "no outcome: the host did not finish the case; see console.log" >&2
    tail -n 20 console.log >&2
    exit 3
fi
echo "outcome: $observed"
if [ "$observed" = "$expected" ]; then
    echo "same outcome as the run"
    exit 0
fi
echo "DIFFERENT outcome from the run"
exit 1
"""


def find_case(results_dir: Path, case_id: str, kernel: str | None,
              run_dir: Path | None) -> tuple[Path, Case]:
    """The case in run_dir, else in the newest run under results_dir that holds it."""
    wanted = case_id.removeprefix(f"{DIFFERS}/")  # rerun the case that differed
    if run_dir is not None:
        candidates = [run_dir]
    else:
        candidates = sorted((d for d in results_dir.iterdir()
                             if (d / MANIFEST).is_file() and not d.is_symlink()),
                            key=lambda d: (d / MANIFEST).stat().st_mtime, reverse=True
                            ) if results_dir.is_dir() else []
    for directory in candidates:
        try:
            cases = [c for c in load_cases(directory) if c.id == wanted
                     and (kernel is None or c.kernel == kernel)]
        except BadInput:
            if run_dir is not None:
                raise
            continue  # not a run this rig can read: the newest one that is
        if len(cases) > 1:
            raise BadInput(f"{case_id}: run {directory.name} has it on several kernels"
                           f" ({', '.join(c.kernel for c in cases)}): add --kernel")
        if cases:
            return directory, cases[0]
    where = run_dir or f"any run under {results_dir}"
    raise BadInput(f"{case_id}: no such case{f' on kernel {kernel}' if kernel else ''}"
                   f" in {where}")


# The options the rig's own QEMU command has (targets/qemu.py), each with what its
# value may be; a recorded command with any other option is refused: QEMU options
# can run programs (-netdev tap,script=) or reach the host's files.
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9,=._+-]*")
_FLAGS = ("-nographic", "-no-reboot")
_OPTIONS: dict[str, re.Pattern[str] | None] = {
    "-M": _WORD, "-machine": _WORD, "-cpu": _WORD, "-smp": _WORD, "-m": _WORD,
    "-icount": _WORD, "-accel": _WORD, "-bios": re.compile("default"),
    "-append": re.compile(r"[^\x00-\x1f\x7f]*"),
    "-kernel": None, "-initrd": None, "-pidfile": None,  # paths: checked apart
    "-fsdev": re.compile(r"local,id=share\d+,path=[^,\x00-\x1f]+,security_model=none,"
                         r"readonly=on"),
    "-device": re.compile(r"virtio-9p-device,fsdev=share\d+,mount_tag=[A-Za-z0-9_-]+"),
}


def _target_command(manifest: dict, case: Case, where: str) -> tuple[str, list[str]]:
    """The recorded QEMU command that ran the case's suite, as (binary, options),
    every option one the rig itself writes."""
    kernel = manifest.get("kernels", {}).get(case.kernel)
    if not kernel:
        raise BadInput(f"{where}: kernels: no kernel {case.kernel} (the case's)")
    for name, target in kernel.get("targets", {}).items():
        if case.suite in target.get("suites", []):
            field = f"{where}: kernels.{case.kernel}.targets.{name}.qemu_command"
            try:
                binary, *args = shlex.split(target.get("qemu_command", ""))
            except ValueError as exc:
                raise BadInput(f"{field}: not a command line ({exc})") from None
            _check_options(args, field)
            return binary, args
    raise BadInput(f"{where}: no boot that ran suite {case.suite} on kernel {case.kernel}")


def _check_options(args: list[str], field: str) -> None:
    position = 0
    while position < len(args):
        option = args[position]
        if option in _FLAGS:
            position += 1
            continue
        if option not in _OPTIONS or position + 1 >= len(args):
            raise BadInput(f"{field}: option {shown(option)} is not one the rig's QEMU"
                           " command has")
        rule, value = _OPTIONS[option], args[position + 1]
        if rule is not None and not rule.fullmatch(value):
            raise BadInput(f"{field}: {option} {shown(value)} is not a value the rig writes")
        position += 2
    for required in ("-kernel", "-initrd", "-append"):
        if args.count(required) != 1:
            raise BadInput(f"{field}: {required} given {args.count(required)} times, not once")


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _from_cache(args: list[str], option: str, cache_dir: Path, field: str) -> Path:
    """A file the bundle copies: only ever one of the rig's cache."""
    path = Path(_option(args, option))
    if not path.is_absolute():
        raise BadInput(f"{field}: {option} {shown(str(path))} is not a path in the rig's cache")
    return validate.inside(cache_dir, path, f"{field}: {option}")


def _initramfs(recorded: Path, cache_dir: Path, script: str) -> tuple[bytes, str]:
    """The run's initramfs with today's /init and the case script; and a note on it."""
    note = f"the run's initramfs ({recorded.name})"
    if not recorded.is_file():  # the cache was cleaned: the rig's current one
        recorded = guest.host_initramfs(cache_dir)
        note = f"rebuilt ({recorded.name}): the run's own {recorded.name} is gone from the cache"
    members = image.read_cpio(recorded.read_bytes())
    members["init"] = image.Entry("init", stat.S_IFREG | 0o755, image.INIT_SCRIPT.read_bytes())
    members[CASE_SCRIPT] = image.Entry(CASE_SCRIPT, stat.S_IFREG | 0o755, script.encode())
    out = io.BytesIO()
    image.write_cpio(list(members.values()), out)
    return out.getvalue(), note


def bundle(rig: RigConfig, case_id: str, kernel: str | None, run_dir: Path | None,
           out: Path | None, tar: bool) -> Path:
    run_dir, case = find_case(rig.results_dir, case_id, kernel, run_dir)
    manifest_path = run_dir / MANIFEST
    manifest = load_manifest(run_dir)
    cls = registry().get(case.suite)
    if cls is None:
        raise BadInput(f"{case.id}: no suite {case.suite} in this rig")
    saved = manifest.get("suites", {}).get(case.suite)
    suite = cls(saved_suite_config(manifest_path, case.suite, saved) if saved
                else rig.suites[case.suite])
    script = suite.command_for(case.id)
    binary, args = _target_command(manifest, case, str(manifest_path))
    field = f"{manifest_path}: kernels.{case.kernel}.targets (qemu_command)"
    kernel_image = _from_cache(args, "-kernel", rig.cache_dir, field)
    if not kernel_image.is_file():
        raise InfraError(f"{kernel_image}: the run's kernel is gone from the cache;"
                         f" rebuild it with 'orchestrator build {case.kernel}'")
    cpio, note = _initramfs(_from_cache(args, "-initrd", rig.cache_dir, field), rig.cache_dir,
                            script)
    for option, value in zip(args, args[1:], strict=False):
        if option == "-fsdev":  # a share the suite's host mounts: from the cache too
            shared = Path(value.split(",path=", 1)[1].split(",", 1)[0])
            validate.inside(rig.cache_dir, shared, f"{field}: -fsdev path")

    args[args.index("-kernel") + 1] = "Image"
    args[args.index("-initrd") + 1] = "initramfs.cpio"
    if "-pidfile" in args:
        at = args.index("-pidfile")
        del args[at:at + 2]
    append = args.index("-append") + 1
    args[append] = f"{args[append]} rig.run=/{CASE_SCRIPT}"

    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", case.id)
    if out is None:  # case.kernel follows the name rule (the results schema)
        out = validate.inside(rig.results_dir, rig.results_dir / f"reproduce-{case.kernel}-{safe}",
                              f"{manifest_path}: kernel {case.kernel}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "Image").write_bytes(kernel_image.read_bytes())
    (out / "initramfs.cpio").write_bytes(cpio)
    (out / "case.sh").write_text(script + "\n")
    (out / "qemu-command.txt").write_text(shlex.join([Path(binary).name, *args]) + "\n")
    (out / "outcome.txt").write_text(outcome_line(case.outcome) + "\n")
    (out / "case.json").write_text(json.dumps(
        {**case.to_json(), "run": run_dir.name, "initramfs": note}, indent=1) + "\n")
    run_sh = out / "run.sh"
    quoted = {k: shlex.quote(v) for k, v in (("case_id", case.id), ("kernel", case.kernel),
                                              ("run_id", run_dir.name),
                                              ("verdict", case.verdict))}
    run_sh.write_text(RUN_SH.format(**quoted, qemu_args=shlex.join(args), timeout=RUN_TIMEOUT,
                                    mark=OUTCOME_MARK))
    run_sh.chmod(0o755)
    if not tar:
        return out
    archive = out.with_name(out.name + ".tar.gz")
    with tarfile.open(archive, "w:gz") as bundle_tar:
        bundle_tar.add(out, arcname=out.name)
    return archive
