"""The command line as scripts drive it: help with a description and exit codes for
every subcommand, -c and --results-dir on either side of the subcommand, JSON
summaries, a reader that leaves early."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator import cli, store
from orchestrator.results import Case, Measurement, RunRecord
from orchestrator.verdicts import PASS

REPO = Path(__file__).resolve().parents[2]


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict:
    """Every subcommand's parser, nested ones (lava export) by their full name."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(subcommands(sub, f"{prefix}{name} "))
    return found


def test_every_subcommand_describes_itself_and_its_exit_codes() -> None:
    found = subcommands(cli.build_parser())
    assert {"run", "nightly", "compare", "trend", "lava export", "lava import"} <= set(found)
    for name, parser in found.items():
        text = parser.format_help()
        assert parser.description, name
        assert "exit codes:" in text, name
        for action in parser._actions:  # every option says what it is for
            assert action.help, f"{name} {action.option_strings or action.dest}"


def test_options_are_named_alike() -> None:
    """A kernel is --kernel KERNEL everywhere, and repeatable wherever it may repeat."""
    for name, parser in subcommands(cli.build_parser()).items():
        for action in parser._actions:
            if "--kernel" in action.option_strings:
                assert action.metavar == "KERNEL", name
                if isinstance(action, argparse._AppendAction):
                    assert "(repeatable)" in action.help, name


def test_compare_help_names_the_file_it_writes() -> None:
    text = subcommands(cli.build_parser())["compare"].format_help()
    assert "measurements.png" in text and "latency.png" not in text


def one_kernel_rig(tmp_path: Path) -> Path:
    doc = yaml.safe_load((REPO / "rig.yaml").read_text().replace("images/", f"{REPO}/images/"))
    doc["kernels"] = doc["kernels"][:1]
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_before_or_after_the_subcommand(tmp_path: Path, where: str,
                                               capsys: pytest.CaptureFixture) -> None:
    rig = str(one_kernel_rig(tmp_path))
    argv = ["-c", rig, "list", "--json"] if where == "before" else ["list", "--json", "-c", rig]
    assert cli.main(argv) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed["kernels"]) == 1
    assert "get-reg-list" in listed["found_at_run_time"]["kselftest-kvm"]


def finished_run(results: Path, run_id: str, cases: int) -> Path:
    record = RunRecord(results, run_id)
    for i in range(cases):
        record.add(Case(f"kvm-host/c{i}", "kvm-host", PASS, kernel="k", outcome={"kind": "ok"},
                        measurement=Measurement(100.0 + i, "instructions", "exact", [[100.0]])
                        if i == 0 else None))
    record.set_manifest(kernels={"k": {"key": "k1", "source": "linux-source-6.12=6.12.57-1"}})
    record.flush()
    record.finish()
    return record.dir


def test_results_dir_and_json_summaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "elsewhere"
    finished_run(results, "r1", 3)
    finished_run(results, "r2", 2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RIG_STORE", raising=False)
    assert cli.main(["compare", "r1", "r2", "--json", "--results-dir", str(results)]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["comparisons"][0]["gone"] == ["kvm-host/c2"]
    assert Path(compared["report"]).parent.parent == results
    monkeypatch.setenv("RIG_RESULTS_DIR", str(results))
    assert (results / "latest").resolve() == results / "r2"
    assert cli.main(["nightly", "--from", "r1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changes"][0]["baseline_run"] is None
    assert cli.main(["nightly", "--from", "latest", "--json"]) == 1  # a gone case
    night = json.loads(capsys.readouterr().out)
    assert (night["run_id"], night["exit_code"], night["run_exit_code"]) == ("r2", 1, 0)
    assert night["kernels"] == {"k": {PASS: 2}}
    assert set(night["files"]) >= {"results.json", "junit.xml", "kcidb.json", "report.md"}
    assert night["changes"][0]["baseline_run"] == "r1"
    assert [c["id"] for c in night["changes"][0]["cases"]["gone-cases"]] == ["kvm-host/c2"]


def test_a_run_still_being_written_is_not_a_nightly(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    record = RunRecord(tmp_path, "writing")
    record.add(Case("kvm-host/a", "kvm-host", PASS, kernel="k", outcome={"kind": "ok"}))
    record.flush()
    assert cli.main(["nightly", "--from", "writing", "--results-dir", str(tmp_path)]) == 2
    assert "has not finished" in capsys.readouterr().err
    assert not store.path_for(tmp_path).exists() or not store.Store(
        store.path_for(tmp_path)).run("writing")


def test_a_reader_that_leaves_early_is_no_error(tmp_path: Path) -> None:
    finished_run(tmp_path, "r1", 1)
    with store.Store(store.path_for(tmp_path)) as db:
        db.import_dir(tmp_path / "r1")
    command = [sys.executable, "-m", "orchestrator", "trend", "--json", "--results-dir",
               str(tmp_path)]
    reader = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    reader.stdout.close()  # `| head -0`: gone before the first line
    assert reader.wait(timeout=120) == cli.EXIT_BROKEN_PIPE
    assert reader.stderr.read() == b""
