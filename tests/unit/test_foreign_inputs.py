"""Foreign inputs never execute, escape or corrupt: the crafted corpus
(tests/foreign/corpus.py), each entry answered with exit 2 and one line, and
the well-formed inputs it is crafted from still accepted."""

from __future__ import annotations

import copy
import itertools
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestrator import store
from orchestrator.errors import BadInput
from orchestrator.results import load_cases
from tests.foreign.corpus import CORPUS, GOOD_ID, KERNEL, RUN_ID, Crafted, Lab, check


def test_the_corpus_covers_every_command() -> None:
    assert {c.command for c in CORPUS} == {"import", "reproduce", "trend", "lava import"}
    assert len({c.name for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("entry", CORPUS, ids=[c.name for c in CORPUS])
def test_crafted_input_is_one_line_and_exit_2(entry: Crafted, tmp_path: Path) -> None:
    finding = check(entry, tmp_path / "lab")
    assert finding.ok, f"{finding.line}: {'; '.join(finding.problems)}"


def test_well_formed_run_imports_then_is_idempotent_then_forgotten(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    run = lab.run_dir()
    first = lab.orchestrator("import", str(run))
    assert (first.code, first.out) == (0, f"{RUN_ID}: imported\n"), first.err
    again = lab.orchestrator("import", str(run))
    assert (again.code, again.out) == (0, f"{RUN_ID}: already stored\n"), again.err
    trend = lab.orchestrator("trend")
    assert trend.code == 0 and f"{KERNEL} latency/sbi-in-kernel" in trend.out
    gone = lab.orchestrator("forget", RUN_ID)
    assert gone.code == 0 and lab.stored() == {}
    missing = lab.orchestrator("forget", RUN_ID)
    assert missing.code == 2 and f"no run '{RUN_ID}' stored" in missing.err


def test_forget_lets_a_run_id_be_stored_from_elsewhere(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    assert lab.orchestrator("import", str(lab.run_dir())).code == 0
    other = lab.run_dir(parent=tmp_path / "elsewhere",
                        results={"schema_version": 1, "run_id": RUN_ID,
                                 "cases": lab.cases()[:1]})
    assert lab.orchestrator("import", str(other)).code == 2
    assert lab.stored() == {RUN_ID: 2}
    assert lab.orchestrator("forget", RUN_ID).code == 0
    assert lab.orchestrator("import", str(other)).code == 0
    assert lab.stored() == {RUN_ID: 1}


def test_damaged_store_is_found_on_open_and_rebuilt_as_it_says(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    entry = next(c for c in CORPUS if c.command == "trend")
    entry.craft(lab)
    answer = lab.orchestrator("trend")
    assert answer.code == 2
    path = store.path_for(lab.results)
    assert f"mv {path} {path}.damaged" in answer.err
    path.rename(path.with_name(path.name + ".damaged"))
    rebuilt = lab.orchestrator("import", str(lab.results))
    assert rebuilt.code == 0 and f"{GOOD_ID}: imported" in rebuilt.out
    assert lab.orchestrator("trend").code == 0


def test_bundle_of_a_well_formed_run_reruns_with_a_stand_in_qemu(tmp_path: Path) -> None:
    """The bundle's run.sh is valid sh, quotes what it took from the run, and
    compares the outcome a (stand-in) QEMU prints with the recorded one."""
    lab = Lab(tmp_path)
    made = lab.orchestrator("reproduce", "kvm-host/dev-kvm", "--run", str(lab.run_dir()))
    assert made.code == 0, made.err
    bundle = lab.results / f"reproduce-{KERNEL}-kvm-host_dev-kvm"
    run_sh = bundle / "run.sh"
    assert subprocess.run(["sh", "-n", str(run_sh)]).returncode == 0
    assert f"kernel={KERNEL}\n" in run_sh.read_text()
    qemu = tmp_path / "qemu"
    qemu.write_text("#!/bin/sh\necho 'RIG-OUTCOME kind=dev-kvm present=true'\n")
    qemu.chmod(0o755)
    rerun = subprocess.run([str(run_sh)], env={"QEMU": str(qemu), "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"case: {KERNEL} kvm-host/dev-kvm" in rerun.stdout
    assert "same outcome as the run" in rerun.stdout


def test_an_internal_error_leaves_its_traceback_in_a_private_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash log's name is not guessable (another user could plant a link there)."""
    def broken(path: Path) -> None:
        raise RuntimeError("a bug")

    lab = Lab(tmp_path / "lab")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setattr(store, "Store", broken)
    planted = tmp_path / f"orchestrator-crash-{os.getpid()}.log"
    planted.symlink_to(tmp_path / "victim")
    answer = lab.orchestrator("trend")
    assert answer.code == 3
    log = Path(answer.err.split("(traceback in ")[1].rstrip(")\n"))
    assert log.parent == tmp_path and log != planted and "RuntimeError: a bug" in log.read_text()
    assert not (tmp_path / "victim").exists() and log.stat().st_mode & 0o077 == 0



# -- any run directory: imported whole, or exit 2 with one line; never a crash ------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


def _mutated(doc: object, steps: list[int], value: object) -> object:
    """doc with the node a walk of `steps` reaches replaced by value."""
    if not steps or not isinstance(doc, dict | list) or not doc:
        return value
    copied = copy.copy(doc)
    keys = list(copied) if isinstance(copied, dict) else list(range(len(copied)))
    key = keys[steps[0] % len(keys)]
    copied[key] = _mutated(copied[key], steps[1:], value)
    return copied


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab(tmp_path_factory.mktemp("lab"))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["results", "manifest"]),
       steps=st.lists(st.integers(min_value=0, max_value=50), max_size=5), value=json_values)
def test_any_run_directory_is_imported_or_bad_input(lab: Lab, which: str, steps: list[int],
                                                    value: object) -> None:
    run_id = f"h{next(_serial)}"
    docs = {"results": {"schema_version": 1, "run_id": run_id, "cases": lab.cases()},
            "manifest": lab.manifest()}
    docs[which] = _mutated(docs[which], steps, value)
    before = lab.stored()
    run = lab.run_dir(run_id, raw_results=json.dumps(docs["results"]),
                      raw_manifest=json.dumps(docs["manifest"]))
    answer = lab.orchestrator("import", str(run))
    event(f"exit {answer.code}")
    if answer.code == 0:
        assert answer.out == f"{run_id}: imported\n" and lab.stored()[run_id] >= 0
        assert lab.orchestrator("trend").code == 0
    else:
        assert answer.code == 2, answer.err
        lines = answer.err.splitlines()
        assert len(lines) == 1 and f"{run}/" in lines[0] and len(lines[0]) < 600, answer.err
        assert lab.stored() == before


_serial = itertools.count()


def test_well_formed_lava_export_imports(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    answer = lab.orchestrator("lava", "import", str(lab.lava_export()))
    assert answer.code == 0, answer.err
    (run,) = [d for d in lab.results.iterdir() if d.is_dir() and not d.is_symlink()]
    assert {c.id: c.verdict for c in load_cases(run)} == {
        "kvm-host/hypervisor-extension": "pass", "kvm-host/dev-kvm": "pass"}
    assert lab.stored() == {run.name: 2}
    again = lab.orchestrator("import", str(run))  # the run it wrote reads back as a run
    assert (again.code, again.out) == (0, f"{run.name}: already stored\n"), again.err


# -- any LAVA export: a run judged from it, or exit 2 with one line; never a crash --

console_lines = st.one_of(
    st.sampled_from(Lab.console()),
    st.builds(lambda *parts: " ".join(parts),
              st.sampled_from(["RIG-CMD-BEGIN", "RIG-CMD-END", "RIG-LAVA-DONE", "RIG-CASE"]),
              st.text(alphabet="0123456789.- abcdonetimu", max_size=20)),
    st.text(max_size=30))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan_steps=st.one_of(st.none(), st.lists(st.integers(0, 50), max_size=6)),
       value=json_values, console=st.lists(console_lines, max_size=8),
       at=st.integers(0, 10), raw_line=st.one_of(st.none(), st.text(max_size=40)))
def test_any_lava_export_is_judged_or_bad_input(
        lab: Lab, plan_steps: list[int] | None, value: object, console: list[str], at: int,
        raw_line: str | None) -> None:
    plan = lab.plan() if plan_steps is None else _mutated(lab.plan(), plan_steps, value)
    lines = Lab.console()
    lines[at % len(lines):at % len(lines)] = console
    log = Lab.job_log(lines, [raw_line] if raw_line is not None else [])
    export = lab.lava_export(plan=plan, log=log, name=f"export-{next(_serial)}")
    before, runs = lab.files_outside(lab.results), set(lab.results.iterdir())
    answer = lab.orchestrator("lava", "import", str(export))
    event(f"exit {answer.code}")
    assert "internal error" not in answer.err and "Traceback" not in answer.err, answer.err
    assert lab.files_outside(lab.results) == before
    if answer.code == 2:
        lines = answer.err.splitlines()
        assert len(lines) == 1 and f"{export}/" in lines[0], answer.err
        assert set(lab.results.iterdir()) == runs
    else:  # a run, judged: its verdicts give the exit code
        assert answer.code in (0, 1, 3) and "results: " in answer.out, answer.err


def test_a_bad_figure_an_older_rig_stored_is_named_with_the_way_out(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    assert lab.orchestrator("import", str(lab.run_dir())).code == 0
    with sqlite3.connect(store.path_for(lab.results)) as db:  # as the rig before checks did
        db.execute("UPDATE measurements SET value = 'abc'")
    answer = lab.orchestrator("trend")
    assert answer.code == 2 and f"remove the run with 'orchestrator forget {RUN_ID}'" in answer.err
    assert lab.orchestrator("forget", RUN_ID).code == 0
    assert lab.orchestrator("trend").code == 0


def test_a_bad_case_record_an_older_rig_stored_is_named_with_the_way_out(
        tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    assert lab.orchestrator("import", str(lab.run_dir())).code == 0
    with sqlite3.connect(store.path_for(lab.results)) as db:
        db.execute("UPDATE cases SET record = '{\"id\": 5}'")
    said = f"run {RUN_ID}: record: .top level.: 'suite' is required; remove the run with"
    with store.Store(store.path_for(lab.results)) as db, pytest.raises(BadInput, match=said):
        db.cases(db.run(RUN_ID))


@pytest.mark.parametrize("case_id", ["counters/pmu/VU/cycle/scounteren=0x7",
                                     "isolation/perf_user_access=1/pinned/host-policy"])
def test_a_case_id_is_matched_whole_before_it_becomes_a_script(case_id: str) -> None:
    """command_for puts parts of the id into the host script: an id with anything
    after the pattern (a newline, a second line) is no case of the suite."""
    from orchestrator.suites import registry

    suite = registry()[case_id.split("/")[0]](registry()[case_id.split("/")[0]].Config())
    assert suite.command_for(case_id)
    for tail in ("\n", "\nreboot -f", "é"):
        with pytest.raises(BadInput, match="has no command that reruns one case alone"):
            suite.command_for(case_id + tail)


# -- what the host's programs print is foreign too: judged, or error cases; never a crash

RECORDS = ['{"kind":"counter","mode":"VU","counter":"cycle","outcome":"value","value":',
           '{"kind":"counter","outcome":"exception","cause":"x"}', '{"kind":"isolation"}',
           '{"kind":"isolation","host_probe":5}', '{"kind":"latency","windows":[1,"x"]}',
           '{"kind":"latency","test":"sbi-in-kernel","windows":[]}', "null", "[]", "{}",
           "1e999", "\x00\x1b[31m", "9" * 5000]


@pytest.fixture(scope="module")
def recorded(lab: Lab) -> dict:
    return lab.recorded_plan()


# LAVA escapes what it logs; it never writes a surrogate pair (a character past U+FFFF
# that JSON would escape as two), so the text drawn stays in the basic plane
program_text = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)),
                       max_size=40)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outputs=st.lists(st.lists(st.one_of(st.sampled_from(RECORDS), program_text),
                                 min_size=1, max_size=3), min_size=1, max_size=30),
       statuses=st.lists(st.sampled_from(["0 1.0 2.0 done", "0 1.0 2.0 done",
                                          "1 1.0 2.0 done", "137 1.0 300.0 timeout"]),
                         max_size=30))
def test_any_program_output_is_judged_or_an_error_case(lab: Lab, recorded: dict,
                                                        outputs: list[list[str]],
                                                        statuses: list[str]) -> None:
    lines = []
    for boot in recorded["kernels"][Lab.LAVA_KERNEL]["boots"]:
        lines.append(f"RIG-LAVA-BOOT {boot['index']}")
        for n, command in enumerate(boot["commands"]):
            status = statuses[n % len(statuses)] if statuses else "0 1.0 2.0 done"
            lines += [f"RIG-CMD-BEGIN {command['id']}", *outputs[n % len(outputs)],
                      f"RIG-CMD-END {command['id']} {status}"]
        lines.append(f"RIG-LAVA-DONE {boot['index']}")
    export = lab.lava_export(plan=recorded, log=Lab.job_log(lines),
                             name=f"export-{next(_serial)}")
    answer = lab.orchestrator("lava", "import", str(export))
    event(f"exit {answer.code}")
    assert "internal error" not in answer.err, answer.err[-2000:]
    assert answer.code in (0, 1, 3) and "results: " in answer.out, answer.err[-2000:]
