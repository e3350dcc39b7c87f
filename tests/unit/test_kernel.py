"""Cache keys and config checking: what decides a rebuild, with no build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import kernel
from orchestrator.config import DebianSource, KernelSpec
from orchestrator.errors import BadInput


def spec(tmp_path: Path, patch_text: str = "p1",
         fragment_text: str = "CONFIG_KVM=y\n") -> KernelSpec:
    patch, fragment = tmp_path / "a.patch", tmp_path / "kvm.config"
    patch.write_text(patch_text)
    fragment.write_text(fragment_text)
    return KernelSpec("k", DebianSource("debian", "linux-source-6.12"), (patch,), (fragment,))


def test_key_is_stable_for_the_same_inputs(tmp_path: Path) -> None:
    assert kernel.kernel_key("src=1", spec(tmp_path), "gcc 12") == kernel.kernel_key(
        "src=1", spec(tmp_path), "gcc 12")


@pytest.mark.parametrize("change", ["source", "patch", "fragment", "toolchain"])
def test_key_changes_with_each_input(tmp_path: Path, change: str) -> None:
    base = kernel.kernel_key("src=1", spec(tmp_path), "gcc 12")
    changed = kernel.kernel_key(
        "src=2" if change == "source" else "src=1",
        spec(tmp_path, patch_text="p2" if change == "patch" else "p1",
             fragment_text="CONFIG_KVM=n\n" if change == "fragment" else "CONFIG_KVM=y\n"),
        "gcc 13" if change == "toolchain" else "gcc 12",
    )
    assert changed != base


def test_key_ignores_file_names(tmp_path: Path) -> None:
    first = spec(tmp_path)
    renamed = tmp_path / "b.patch"
    renamed.write_text("p1")
    second = KernelSpec("other", first.source, (renamed,), first.config)
    assert kernel.kernel_key("s", first, "t") == kernel.kernel_key("s", second, "t")


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".config"
    path.write_text(text)
    return path


def test_check_config_accepts_a_fragment_that_survived(tmp_path: Path) -> None:
    fragment = tmp_path / "f.config"
    fragment.write_text("CONFIG_KVM=y\n# CONFIG_NONPORTABLE is not set\nCONFIG_NR_CPUS=4\n")
    final = write_config(tmp_path, "CONFIG_KVM=y\n# CONFIG_NONPORTABLE is not set\n"
                                   "CONFIG_NR_CPUS=4\n")
    assert kernel.check_config(final, (fragment,), lambda symbol: True) == []


@pytest.mark.parametrize(("fragment_line", "final_text", "reported"), [
    ("CONFIG_SOC_VIRT=y", "CONFIG_KVM=y\n", "CONFIG_SOC_VIRT=y did not survive"),
    ("CONFIG_NR_CPUS=4", "CONFIG_NR_CPUS=8\n", "final .config has CONFIG_NR_CPUS=8"),
    ("# CONFIG_KVM is not set", "CONFIG_KVM=y\n", "CONFIG_KVM=n did not survive"),
])
def test_check_config_names_the_symbol_that_did_not_survive(
    tmp_path: Path, fragment_line: str, final_text: str, reported: str
) -> None:
    fragment = tmp_path / "f.config"
    fragment.write_text(fragment_line + "\n")
    with pytest.raises(BadInput, match="f.config") as caught:
        kernel.check_config(write_config(tmp_path, final_text), (fragment,), lambda symbol: True)
    assert reported in caught.value.message


def test_an_option_the_kconfig_dropped_is_returned_with_the_suites_needing_it(
        tmp_path: Path) -> None:
    fragment = tmp_path / "f.config"
    fragment.write_text("CONFIG_PROC_SYSCTL=y\n\n# needed by: kselftest-kvm, linux-guest\n"
                        "CONFIG_USERFAULTFD=y\nCONFIG_KVM=y\n\nCONFIG_GONE=y\n")
    final = write_config(tmp_path, "CONFIG_KVM=y\n")
    dropped = kernel.check_config(final, (fragment,), lambda symbol: False)
    assert [o.line() for o in dropped] == [
        "f.config: CONFIG_PROC_SYSCTL=y",
        "f.config: CONFIG_USERFAULTFD=y (needed by kselftest-kvm, linux-guest)",
        "f.config: CONFIG_GONE=y"]


def test_unmet_needs_names_only_the_suites_that_need_a_dropped_option(tmp_path: Path) -> None:
    from dataclasses import asdict
    options = (kernel.FragmentOption("CONFIG_USERFAULTFD", "y", "f.config", ("kselftest-kvm",)),
               kernel.FragmentOption("CONFIG_PROC_SYSCTL", "y", "f.config"))
    built = _built(tmp_path, release="7.3.4", dropped_options=tuple(map(asdict, options)))
    assert kernel.unmet_needs(built, ["counters", "kselftest-kvm"]) == {
        "kselftest-kvm": "f.config: CONFIG_USERFAULTFD=y (needed by kselftest-kvm):"
                         " not in 7.3.4's Kconfig"}


def _built(out: Path, **fields) -> kernel.BuiltKernel:
    for name in ("Image", "vmlinux", "config", "build.log"):
        (out / name).write_text(name)
    record = dict(name="k", key="0" * 64, image=out / "Image", vmlinux=out / "vmlinux",
                  config=out / "config", build_log=out / "build.log", build_seconds=1.0,
                  cached=False, source="linux-source-6.12=6.12.118-1~deb12u1", patches={},
                  config_sha256="", toolchain="gcc", release="6.12.118+")
    return kernel.BuiltKernel(**{**record, **fields})


def test_a_cached_record_keeps_the_kernel_release(tmp_path: Path) -> None:
    kernel.save_record(tmp_path, _built(tmp_path, release="6.12.999-rc1+"))
    cached = kernel.load_cached(tmp_path)
    assert cached is not None and cached.cached
    assert cached.release == "6.12.999-rc1+"


def test_a_record_from_an_older_rig_without_a_release_is_rebuilt(tmp_path: Path) -> None:
    kernel.save_record(tmp_path, _built(tmp_path))
    record = tmp_path / "kernel.json"
    data = json.loads(record.read_text())
    del data["release"]
    record.write_text(json.dumps(data))
    assert kernel.load_cached(tmp_path) is None
