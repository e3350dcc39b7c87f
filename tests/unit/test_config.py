"""rig.yaml parsing and validation, and the CLI's handling of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator import cli, config
from orchestrator.errors import EXIT_BAD_INPUT, BadInput
from orchestrator.suites import registry

REPO = Path(__file__).resolve().parents[2]
PATCH_1 = "images/patches/0001-RISC-V-KVM-swap-HSTATUS-in-C-backport-b6114a7e.patch"


def default_doc() -> dict:
    return yaml.safe_load((REPO / "rig.yaml").read_text())


def write_rig(tmp_path: Path, doc: dict) -> Path:
    """Write doc as tmp_path/rig.yaml with the repo's files at their usual places."""
    for sub in ("images",):
        link = tmp_path / sub
        if not link.exists():
            link.symlink_to(REPO / sub)
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def load_error(tmp_path: Path, doc: dict) -> str:
    with pytest.raises(BadInput) as caught:
        config.load(write_rig(tmp_path, doc))
    return caught.value.message


def test_default_rig_declares_parent_and_commit_kernels() -> None:
    rig = config.load(REPO / "rig.yaml")
    assert [k.name for k in rig.kernels] == ["b922307a-parent", "b922307a"]
    parent, commit = rig.kernels
    assert [p.name for p in parent.patches] == [Path(PATCH_1).name]
    assert [p.name for p in commit.patches][0] == Path(PATCH_1).name
    assert "b922307a" in commit.patches[1].name
    assert isinstance(parent.source, config.DebianSource)
    assert parent.source.debian_package == "linux-source-6.12"
    assert rig.qemu.cpu == "rv64,h=true,sscofpmf=true"
    assert rig.qemu.icount is None
    assert rig.results_dir == REPO / "results"


def test_every_patch_names_the_upstream_commit_it_backports() -> None:
    rig = config.load(REPO / "rig.yaml")
    headers = {p.name: p.read_text().split("\n---\n", 1)[0] for k in rig.kernels
               for p in k.patches}
    assert any("b6114a7e2433" in h for n, h in headers.items() if "0001" in n)
    assert any("b922307a5fecfcf33ca1697f6ec33c9274b75c46" in h for n, h in headers.items()
               if "0002" in n)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    doc = default_doc()
    doc["kernal"] = []
    message = load_error(tmp_path, doc)
    assert str(tmp_path / "rig.yaml") in message
    assert "kernal: unknown key" in message
    assert "kernels" in message  # the expected keys are listed


def test_unknown_nested_key_names_its_path(tmp_path: Path) -> None:
    doc = default_doc()
    doc["kernels"][1]["patch"] = []
    message = load_error(tmp_path, doc)
    assert "kernels[1].patch: unknown key" in message


def test_wrong_type_names_key_value_and_expectation(tmp_path: Path) -> None:
    doc = default_doc()
    doc["qemu"]["smp"] = "two"
    message = load_error(tmp_path, doc)
    assert "qemu.smp: got 'two', expected an integer" in message


def test_bool_is_not_a_number(tmp_path: Path) -> None:
    doc = default_doc()
    doc["timeouts"]["boot"] = True
    assert "timeouts.boot: got True, expected a number" in load_error(tmp_path, doc)


def test_missing_patch_file(tmp_path: Path) -> None:
    doc = default_doc()
    doc["kernels"][0]["patches"].append("images/patches/no-such.patch")
    message = load_error(tmp_path, doc)
    assert "kernels[0].patches[1]: got 'images/patches/no-such.patch'" in message
    assert "an existing file" in message


def test_kernel_with_unknown_source(tmp_path: Path) -> None:
    doc = default_doc()
    doc["kernels"][0]["source"] = "elsewhere"
    assert "kernels[0].source: got 'elsewhere'" in load_error(tmp_path, doc)


def test_duplicate_kernel_names(tmp_path: Path) -> None:
    doc = default_doc()
    doc["kernels"][1]["name"] = doc["kernels"][0]["name"]
    assert "kernels[1].name" in load_error(tmp_path, doc)


def test_git_source_needs_a_repository(tmp_path: Path) -> None:
    doc = default_doc()
    doc["sources"]["mine"] = {"git": "no-such-tree", "ref": "v6.12"}
    assert "sources.mine.git" in load_error(tmp_path, doc)


def test_git_source_and_absent_keys_get_defaults(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    (tree / ".git").mkdir(parents=True)
    doc = default_doc()
    del doc["qemu"], doc["suites"], doc["timeouts"]
    doc["sources"]["mine"] = {"git": "linux", "ref": "v6.12"}
    doc["kernels"][0]["source"] = "mine"
    rig = config.load(write_rig(tmp_path, doc))
    assert rig.kernels[0].source == config.GitSource("mine", tree, "v6.12")
    assert rig.qemu == config.QemuConfig()
    assert rig.timeouts == config.TimeoutsConfig()
    assert {name: cfg == registry()[name].Config() for name, cfg in rig.suites.items()} == {
        name: True for name in registry()}


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text("qemu:\n  smp: 1\n kernels: [\n")
    with pytest.raises(BadInput, match=r"rig\.yaml: line \d+: invalid YAML"):
        config.load(path)


def unknown_key(doc: dict) -> None:
    doc["qemu"]["cpus"] = 2


def wrong_type(doc: dict) -> None:
    doc["qemu"]["memory"] = 512


def missing_patch(doc: dict) -> None:
    doc["kernels"][1]["patches"][1] = "images/patches/gone.patch"


@pytest.mark.parametrize(("edit", "reported"), [
    (unknown_key, "qemu.cpus: unknown key"),
    (wrong_type, "qemu.memory: got 512, expected a string"),
    (missing_patch, "kernels[1].patches[1]: got 'images/patches/gone.patch', expected an"
                    " existing file"),
])
@pytest.mark.parametrize("subcommand", [["build"], ["run"], ["boot", "b922307a", "--", "true"]])
def test_cli_reports_bad_config_on_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], subcommand: list[str], edit, reported: str
) -> None:
    doc = default_doc()
    edit(doc)
    path = write_rig(tmp_path, doc)
    assert cli.main(["-c", str(path), *subcommand]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"orchestrator: error: {path}: ")
    assert reported in err[0]


def test_cli_unknown_kernel_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-c", str(REPO / "rig.yaml"), "build", "v9.9"]) == EXIT_BAD_INPUT
    assert "no kernel named 'v9.9'" in capsys.readouterr().err


def test_cli_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["frobnicate"])
    assert caught.value.code == EXIT_BAD_INPUT


def test_cli_rejects_a_command_for_subcommands_other_than_boot() -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["-c", str(REPO / "rig.yaml"), "build", "--", "uname"])
    assert caught.value.code == EXIT_BAD_INPUT


def test_cli_boot_without_a_command_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-c", str(REPO / "rig.yaml"), "boot", "b922307a"]) == EXIT_BAD_INPUT
    assert "give a command after '--'" in capsys.readouterr().err


def test_suite_lists_are_checked_item_by_item(tmp_path: Path) -> None:
    doc = default_doc()
    doc["suites"]["counters"]["scounteren"] = [0, "7"]
    assert ("suites.counters.scounteren[1]: got '7', expected an integer"
            in load_error(tmp_path, doc))


def test_migration_needs_two_host_cpus(tmp_path: Path) -> None:
    doc = default_doc()
    doc["qemu"]["smp"] = 1
    assert "qemu.smp: got 1, expected >= 2 for suite isolation" in load_error(tmp_path, doc)


@pytest.mark.parametrize(("section", "key", "value", "expected"), [
    ("counters", "scounteren", [-1], "a 32-bit value"),
    ("counters", "scounteren", [0x1FFFFFFFF], "a 32-bit value"),
    ("isolation", "perf_user_access", [7], "0, 1 or 2"),
    ("isolation", "exits", -5, "an integer from 3 to"),
    ("isolation", "timer_exits", 5000, "an integer from 1 to exits (300)"),
    ("latency", "windows", 9000, "an integer from 1 to 8192"),
    ("latency", "mode", "fast", "icount or wallclock"),
    ("latency", "iterations", 150, "a multiple of 100 in icount mode"),
])
def test_suite_values_are_checked_against_their_range(tmp_path: Path, section: str, key: str,
                                                      value: object, expected: str) -> None:
    doc = default_doc()
    doc["suites"][section][key] = value
    error = load_error(tmp_path, doc)
    assert f"suites.{section}.{key}" in error and expected in error


def test_unknown_suite_is_named(tmp_path: Path) -> None:
    doc = default_doc()
    doc["suites"]["nope"] = {}
    assert "suites.nope: unknown key" in load_error(tmp_path, doc)


@pytest.mark.parametrize("seconds", [0, -1, float("nan")])
def test_timeouts_must_be_positive(tmp_path: Path, seconds: float) -> None:
    doc = default_doc()
    doc["timeouts"]["command"] = seconds
    assert "timeouts.command: got" in load_error(tmp_path, doc)


@pytest.mark.parametrize("example", sorted((REPO / "docs" / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_examples_load_with_paths_inside_the_repository(example: Path) -> None:
    rig = config.load(example)
    for spec in rig.kernels:
        for path in (*spec.patches, *spec.config):
            assert path.is_file() and REPO in path.parents


@pytest.mark.parametrize("example", ["linux-7.3.yaml", "nightly-current.yaml"])
def test_examples_that_run_every_suite_configure_each_one(example: str) -> None:
    """A suite added to the rig is added to the examples that say they run every suite
    (a suite left out would run with its class defaults, not the shipped settings)."""
    doc = yaml.safe_load((REPO / "docs" / "examples" / example).read_text())
    shipped = yaml.safe_load((REPO / "rig.yaml").read_text())["suites"]
    assert set(doc["suites"]) == set(shipped)
