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

import dataclasses
import io
import json
import re
import shlex
import stat
import tarfile
from pathlib import Path

from orchestrator import guest, image
from orchestrator.config import RigConfig
from orchestrator.errors import BadInput, InfraError
from orchestrator.results import DIFFERS, load_cases
from orchestrator.suites import OUTCOME_MARK, SuiteConfig, outcome_line, registry
from orchestrator.verdicts import Case

CASE_SCRIPT = "rig-case.sh"
RUN_TIMEOUT = 600  # seconds run.sh lets QEMU run (TIMEOUT=... overrides)

RUN_SH = """#!/bin/sh
# Reruns {case_id} on kernel {kernel} (run {run_id} of riscv-kvm-rig).
# Needs qemu-system-riscv64 (or QEMU=/path/to/it) and a POSIX shell, nothing else.
# Exit: 0 same outcome as the run, 1 a different one, 3 QEMU or the host failed.
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
echo "case: {kernel} {case_id}"
echo "recorded outcome: $expected (verdict {verdict} in run {run_id})"
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
                             if (d / "manifest.json").is_file()),
                            key=lambda d: (d / "manifest.json").stat().st_mtime, reverse=True
                            ) if results_dir.is_dir() else []
    for directory in candidates:
        try:
            cases = [c for c in load_cases(directory) if c.id == wanted
                     and (kernel is None or c.kernel == kernel)]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if len(cases) > 1:
            raise BadInput(f"{case_id}: run {directory.name} has it on several kernels"
                           f" ({', '.join(c.kernel for c in cases)}): add --kernel")
        if cases:
            return directory, cases[0]
    where = run_dir or f"any run under {results_dir}"
    raise BadInput(f"{case_id}: no such case{f' on kernel {kernel}' if kernel else ''}"
                   f" in {where}")


def _suite_config(cls: type, saved: dict | None, fallback: SuiteConfig) -> SuiteConfig:
    """The suite's configuration as the run had it (manifest), lists back to tuples."""
    if not saved:
        return fallback
    names = {f.name for f in dataclasses.fields(cls.Config)}
    return cls.Config(**{k: tuple(v) if isinstance(v, list) else v
                         for k, v in saved.items() if k in names})


def _target_command(manifest: dict, case: Case) -> list[str]:
    kernel = manifest.get("kernels", {}).get(case.kernel)
    if not kernel:
        raise BadInput(f"{case.kernel}: not in the run's manifest.json")
    for target in kernel.get("targets", {}).values():
        if case.suite in target["suites"]:
            return shlex.split(target["qemu_command"])
    raise BadInput(f"{case.id}: the manifest names no boot that ran suite {case.suite}")


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


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
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cls = registry().get(case.suite)
    if cls is None:
        raise BadInput(f"{case.id}: no suite {case.suite} in this rig")
    suite = cls(_suite_config(cls, manifest.get("suites", {}).get(case.suite),
                              rig.suites[case.suite]))
    script = suite.command_for(case.id)
    command = _target_command(manifest, case)
    kernel_image = Path(_option(command, "-kernel"))
    if not kernel_image.is_file():
        raise InfraError(f"{kernel_image}: the run's kernel is gone from the cache;"
                         f" rebuild it with 'orchestrator build {case.kernel}'")
    cpio, note = _initramfs(Path(_option(command, "-initrd")), rig.cache_dir, script)

    args = list(command[1:])
    args[args.index("-kernel") + 1] = "Image"
    args[args.index("-initrd") + 1] = "initramfs.cpio"
    at = args.index("-pidfile")
    del args[at:at + 2]
    append = args.index("-append") + 1
    args[append] = f"{args[append]} rig.run=/{CASE_SCRIPT}"

    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", case.id)
    out = out or rig.results_dir / f"reproduce-{case.kernel}-{safe}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "Image").write_bytes(kernel_image.read_bytes())
    (out / "initramfs.cpio").write_bytes(cpio)
    (out / "case.sh").write_text(script + "\n")
    (out / "qemu-command.txt").write_text(shlex.join([Path(command[0]).name, *args]) + "\n")
    (out / "outcome.txt").write_text(outcome_line(case.outcome) + "\n")
    (out / "case.json").write_text(json.dumps(
        {**case.to_json(), "run": run_dir.name, "initramfs": note}, indent=1) + "\n")
    run_sh = out / "run.sh"
    run_sh.write_text(RUN_SH.format(case_id=case.id, kernel=case.kernel, run_id=run_dir.name,
                                    qemu_args=shlex.join(args), timeout=RUN_TIMEOUT,
                                    mark=OUTCOME_MARK, verdict=case.verdict))
    run_sh.chmod(0o755)
    if not tar:
        return out
    archive = out.with_name(out.name + ".tar.gz")
    with tarfile.open(archive, "w:gz") as bundle_tar:
        bundle_tar.add(out, arcname=out.name)
    return archive
