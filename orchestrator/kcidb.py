"""A run as a KCIDB document: the I/O schema (v5.3) of the Linux kernel CI
reporting database, which kernel CI systems submit to with `kcidb-submit`.

Mapping: one checkout per kernel source and patch stack, one build per kernel
(its identity is the kernel's, `identity.build_version`: the same kernel built
on another night is the same build), one test per case, its id the run's (a
test execution happens once). Verdicts: pass, fail, error and skip keep their
names; a known deviation is a SKIP (KVM broke a documented rule: it is known,
not news), its verdict and rule kept under `misc` with the outcome; a
measurement is the test's `number`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from orchestrator.identity import build_version, git_commit
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, SKIP, Case

ORIGIN = "riscv_kvm_rig"
FILE_NAME = "kcidb.json"
SCHEMA_VERSION = {"major": 5, "minor": 3}
_STATUS = {PASS: "PASS", FAIL: "FAIL", ERROR: "ERROR", SKIP: "SKIP", KNOWN_DEVIATION: "SKIP"}
_NOT_IN_PATH = re.compile(r"[^a-zA-Z0-9_-]")


def test_path(case_id: str) -> str:
    """A case id as a KCIDB test path: its '/'-separated parts become '.'-separated
    nodes of [a-zA-Z0-9_-] ('counters/VS/cycle/scounteren=0x5' ->
    'counters.VS.cycle.scounteren_0x5')."""
    return ".".join(_NOT_IN_PATH.sub("_", part) for part in case_id.split("/") if part)


def _patchset_hash(patches: dict[str, str]) -> str:
    """KCIDB's patchset hash: the sha256 of each patch's sha256 and a newline, in order."""
    if not patches:
        return ""
    return hashlib.sha256("".join(f"{h}\n" for h in patches.values()).encode()).hexdigest()


def _checkout(built: dict[str, Any]) -> dict[str, Any]:
    source = built.get("source") or ""
    patches = built.get("patches") or {}
    ident = hashlib.sha256(f"{source}\n{_patchset_hash(patches)}".encode()).hexdigest()[:24]
    checkout: dict[str, Any] = {
        "id": f"{ORIGIN}:{ident}", "origin": ORIGIN, "tree_name": source.split("=")[0],
        "patchset_hash": _patchset_hash(patches), "valid": True,
        "misc": {"source": source, "patches": list(patches)}}
    commit = git_commit(built)
    if commit:
        checkout["git_commit_hash"] = commit
        checkout["tree_name"] = "git"
    if built.get("release"):
        checkout["git_commit_name"] = built["release"]
    return checkout


def _build(name: str, built: dict[str, Any], checkout_id: str) -> dict[str, Any]:
    build: dict[str, Any] = {
        "id": f"{ORIGIN}:{build_version(built)}", "origin": ORIGIN,
        "checkout_id": checkout_id, "architecture": "riscv", "config_name": "tinyconfig+rig",
        "status": "PASS", "comment": name,
        "misc": {"kernel": name, "release": built.get("release"), "key": built.get("key"),
                 "config_sha256": built.get("config_sha256")}}
    if built.get("toolchain"):
        build["compiler"] = built["toolchain"]
    if built.get("build_seconds") is not None:
        build["duration"] = float(built["build_seconds"])
    build["misc"] = {k: v for k, v in build["misc"].items() if v is not None}
    return build


def _test(run_id: str, case: Case, build_id: str, environment: dict[str, Any]
          ) -> dict[str, Any]:
    test: dict[str, Any] = {
        "id": f"{ORIGIN}:{run_id}:{case.kernel}:{case.id}", "origin": ORIGIN,
        "build_id": build_id, "path": test_path(case.id),
        "status": _STATUS.get(case.verdict, "ERROR"), "duration": float(case.duration),
        "environment": environment,
        "misc": {"verdict": case.verdict, "outcome": case.outcome, "run_id": run_id,
                 **({"rule": case.rule} if case.rule else {})}}
    if case.reason_with_rule:
        test["comment"] = case.reason_with_rule
    if case.measurement is not None:
        test["number"] = {"value": float(case.measurement.value),
                          "unit": case.measurement.unit}
    return test


def document(run_id: str, cases: list[Case], manifest: dict[str, Any]) -> dict[str, Any]:
    """The KCIDB document of a run (cases of kernels the manifest does not describe,
    e.g. one whose build failed, have no build to belong to and are left out)."""
    kernels = manifest.get("kernels", {})
    qemu = manifest.get("qemu", {})
    environment = {"comment": f"QEMU {qemu.get('version', '?')} {qemu.get('machine', 'virt')}"
                              f" (TCG, H extension), cpu {qemu.get('cpu', '?')}",
                   "misc": {k: v for k, v in (("host", manifest.get("host")),
                                              ("icount", qemu.get("icount"))) if v is not None}}
    checkouts: dict[str, dict[str, Any]] = {}
    builds: dict[str, dict[str, Any]] = {}
    for name, built in kernels.items():
        checkout = _checkout(built)
        checkouts.setdefault(checkout["id"], checkout)
        builds[name] = _build(name, built, checkout["id"])
    tests = [_test(run_id, c, builds[c.kernel]["id"], environment)
             for c in cases if c.kernel in builds]
    return {"version": SCHEMA_VERSION, "checkouts": list(checkouts.values()),
            "builds": list({b["id"]: b for b in builds.values()}.values()), "tests": tests}
