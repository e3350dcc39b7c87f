"""Nightly: what counts as which change, and when the nightly turns red."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator import config, nightly, squad, store
from orchestrator.config import NightlyConfig
from orchestrator.errors import BadInput
from orchestrator.identity import build_version
from orchestrator.suites import outcome_line
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, Case, Measurement

REPO = Path(__file__).resolve().parents[2]


def case(cid: str, verdict: str, outcome: dict | None = None, rule: str | None = None,
         value: float | None = None) -> Case:
    m = Measurement(value, "instructions", "exact", [[value]]) if value is not None else None
    return Case(cid, cid.split("/")[0], verdict, kernel="k", rule=rule,
                outcome=outcome or {"kind": "value"}, measurement=m)


def kinds(found: nightly.KernelChanges) -> dict[str, list[str]]:
    return {k: [c.id for c in v] for k, v in found.cases.items() if v}


def test_identical_runs_have_no_change() -> None:
    cases = [case("counters/a", PASS), case("counters/b", KNOWN_DEVIATION, rule="r"),
             case("latency/x", PASS, {"kind": "figure"}, value=131.0)]
    found = nightly.changes("k", cases, cases, "r1", "k")
    assert found.count() == 0 and kinds(found) == {}
    assert found.measurements["latency/x"]["verdict"] == "same"


def test_each_kind_of_change() -> None:
    before = [case("counters/new-fail", PASS), case("counters/fixed", FAIL),
              case("counters/dev-gone", KNOWN_DEVIATION, rule="r"),
              case("counters/dev-rule", KNOWN_DEVIATION, rule="r1"),
              case("counters/behaviour", PASS, {"kind": "value"}),
              case("counters/err", PASS), case("counters/gone", PASS),
              case("counters/still-failing", FAIL)]
    now = [case("counters/new-fail", FAIL), case("counters/fixed", PASS),
           case("counters/dev-gone", PASS), case("counters/dev-rule", KNOWN_DEVIATION, rule="r2"),
           case("counters/behaviour", PASS, {"kind": "exception", "cause": 2}),
           case("counters/err", ERROR), case("counters/added", PASS),
           case("counters/added-fail", FAIL), case("counters/still-failing", FAIL)]
    assert kinds(nightly.changes("k", now, before, "r1", "k")) == {
        "new-failures": ["counters/new-fail", "counters/added-fail"],
        "new-errors": ["counters/err"],
        "fixed": ["counters/fixed"],
        "changed-deviations": ["counters/dev-gone", "counters/dev-rule"],
        "changed-behaviour": ["counters/behaviour"],
        "new-cases": ["counters/added"],
        "gone-cases": ["counters/gone"],
    }


def test_a_kernel_without_previous_run_has_only_new_cases() -> None:
    found = nightly.changes("k", [case("a/x", PASS), case("a/y", FAIL)], None)
    assert kinds(found) == {"new-failures": ["a/y"], "new-cases": ["a/x"]}


def test_measurement_method_change_is_reported_not_raised() -> None:
    before = [case("latency/x", PASS, value=131.0)]
    now = [Case("latency/x", "latency", PASS, kernel="k",
                measurement=Measurement(50.0, "ns", "distribution", [[50.0] * 30] * 5))]
    found = nightly.changes("k", now, before, "r1", "k")
    assert found.measurements["latency/x"]["verdict"] == "not comparable"


@pytest.mark.parametrize(("run_code", "now", "fail_on", "expected"), [
    (0, [case("a/x", PASS, value=131.0)], ("new-failures", "slower"), 0),
    (1, [case("a/x", FAIL, value=131.0)], ("new-failures", "slower"), 1),
    (1, [case("a/x", FAIL, value=131.0)], ("slower",), 0),
    (0, [case("a/x", PASS, value=137.0)], ("new-failures", "slower"), 1),
    (0, [case("a/x", PASS, value=137.0)], ("new-failures",), 0),
    (0, [case("a/x", PASS, value=125.0)], ("new-failures", "slower"), 0),  # faster
    (3, [case("a/x", ERROR, value=131.0)], ("new-failures",), 3),
])
def test_exit_policy(run_code: int, now: list[Case], fail_on: tuple, expected: int) -> None:
    found = [nightly.changes("k", now, [case("a/x", PASS, value=131.0)], "r1", "k")]
    assert nightly.exit_code(run_code, found, NightlyConfig(fail_on=fail_on)) == expected


def test_gone_cases_turn_the_night_red_when_fail_on_asks() -> None:
    """A previous run's 45 linux-guest cases missing tonight: red by default, green only
    when fail_on leaves gone-cases out."""
    before = [case("kvm-host/dev-kvm", PASS)] + [case(f"linux-guest/c{i}", PASS)
                                                 for i in range(45)]
    found = [nightly.changes("k", [case("kvm-host/dev-kvm", PASS)], before, "r1", "k")]
    assert len(found[0].cases["gone-cases"]) == 45
    assert nightly.exit_code(0, found, NightlyConfig()) == 1
    assert nightly.exit_code(0, found, NightlyConfig(fail_on=("gone-cases",))) == 1
    assert nightly.exit_code(0, found, NightlyConfig(fail_on=("new-failures", "slower"))) == 0
    assert "gone: 45 case(s) of r1 not run: linux-guest/c0" in "\n".join(nightly.summary(found))


def test_a_failure_known_from_last_night_stays_green() -> None:
    failing = [case("a/x", FAIL)]
    found = [nightly.changes("k", failing, failing, "r1", "k")]
    assert nightly.exit_code(1, found, NightlyConfig()) == 0


def test_build_changes_name_the_fields() -> None:
    old = store.StoredKernel("k", "key1", "git:aaa", "aaa", {"p1": "1", "p2": "2"}, "c", "t")
    new = store.StoredKernel("k", "key2", "git:bbb", "bbb", {"p1": "1", "p3": "3"}, "c", "t")
    assert nightly.build_changes(old, new) == ["source git:aaa -> git:bbb", "patches +p3 -p2"]


def test_a_debian_update_says_the_kernel_changed() -> None:
    old = store.StoredKernel("k", "key1", "linux-source-6.12=6.12.117-1~deb12u1", None, {},
                             "c", "t", "6.12.117+")
    new = store.StoredKernel("k", "key2", "linux-source-6.12=6.12.118-1~deb12u1", None, {},
                             "d", "t", "6.12.118+")
    changed = nightly.build_changes(old, new)
    assert changed[:2] == ["kernel changed: 6.12.117+ -> 6.12.118+",
                           "source linux-source-6.12=6.12.117-1~deb12u1 ->"
                           " linux-source-6.12=6.12.118-1~deb12u1"]
    found = nightly.changes("k", [case("a/x", PASS)], [case("a/x", PASS)], "r1", "k")
    found.build_changes = changed
    assert "  kernel changed: 6.12.117+ -> 6.12.118+" in nightly.summary([found])


def test_report_section_says_zero_changes() -> None:
    text = nightly.markdown([nightly.changes("k", [case("a/x", PASS)], [case("a/x", PASS)],
                                             "r1", "k")], [], None)
    assert text.startswith("## Since the previous run\n\n0 changes.")


def write_rig(tmp_path: Path, nightly_section: str) -> Path:
    """The default rig.yaml with its nightly section replaced."""
    doc = yaml.safe_load((REPO / "rig.yaml").read_text().replace("images/", f"{REPO}/images/"))
    doc.update(yaml.safe_load(nightly_section))
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_nightly_section_in_rig_yaml(tmp_path: Path) -> None:
    rig = config.load(write_rig(tmp_path, "nightly:\n  fail_on: [slower]\n  trend_runs: 5\n"))
    assert rig.nightly == NightlyConfig(fail_on=("slower",), trend_runs=5)
    with pytest.raises(BadInput, match=r"nightly.fail_on\[0\]: got 'faster'"):
        config.load(write_rig(tmp_path, "nightly:\n  fail_on: [faster]\n"))
    with pytest.raises(BadInput, match="nightly.when: unknown key"):
        config.load(write_rig(tmp_path, "nightly:\n  when: 3am\n"))


def test_outcome_line_is_what_host_scripts_print() -> None:
    assert outcome_line({"kind": "exception", "cause": 2}) == "cause=2 kind=exception"
    assert outcome_line({"kind": "guest-scounteren", "kept": True}) == (
        "kept=true kind=guest-scounteren")


def test_squad_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(BadInput, match="holds credentials") as refused:
        squad.split_url("https://me:hunter2@squad.example.org/lkft/rig")
    assert "hunter2" not in refused.value.message


def test_squad_url_and_payload() -> None:
    assert squad.split_url("https://squad.example.org/lkft/rig") == (
        "https://squad.example.org/", "lkft/rig")
    assert squad.split_url("http://127.0.0.1:8000/sub/g/p") == ("http://127.0.0.1:8000/sub/", "g/p")
    with pytest.raises(BadInput):
        squad.split_url("squad.example.org/g")
    cases = [case("a/x", PASS, value=131.0), case("a/y", KNOWN_DEVIATION), case("a/z", ERROR)]
    data = squad.payload(cases, {"run_id": "r1", "kernels": {"k": {"key": "abc"}}}, "k")
    assert data["tests"] == {"a/x": "pass", "a/y": "skip", "a/z": "fail"}
    assert data["metrics"] == {"a/x": 131.0}
    assert data["metadata"] == {"job_id": "r1-k", "run_id": "r1", "kernel_key": "abc"}


def test_squad_never_prints_url_credentials() -> None:
    url = "https://rig:s3cret@squad.example.org/lkft/rig"
    with pytest.raises(BadInput) as refused:
        squad.split_url("https://rig:s3cret@squad.example.org/")
    assert "s3cret" not in refused.value.message and "credentials" in refused.value.message
    assert squad.shown(url) == "https://***@squad.example.org/lkft/rig"
    assert squad.shown(f"connection to {url} refused") == (
        "connection to https://***@squad.example.org/lkft/rig refused")
    assert squad.shown("https://squad.example.org/lkft/rig") == (
        "https://squad.example.org/lkft/rig")


def test_a_kernel_is_published_under_its_version_and_commit_not_the_run() -> None:
    debian = {"release": "6.12.57", "source": "linux-source-6.12=6.12.57-1", "key": "3f" * 32}
    git = {"release": "6.13.0-rc1", "source": "git:" + "ab" * 20, "key": "0c" * 32}
    assert build_version(debian) == "6.12.57-deb6.12.57-1-3f3f3f3f3f3f"
    assert build_version(git) == "6.13.0-rc1-gabababababab-0c0c0c0c0c0c"
    # as SQUAD takes a version: [a-zA-Z0-9_.-], a Debian backport's '~' and a '+' release too
    backport = {"release": "6.12.118+", "source": "linux-source-6.12=6.12.118-1~deb12u1",
                "key": "62b24b476961" + "0" * 52}
    assert build_version(backport) == "6.12.118_-deb6.12.118-1_deb12u1-62b24b476961"
    data = squad.payload([case("a/x", PASS)], {"run_id": "r1", "kernels": {"k": git}}, "k")
    assert data["metadata"]["kernel_commit"] == "ab" * 20
    assert data["metadata"]["kernel_release"] == "6.13.0-rc1"


def test_a_trend_marks_where_the_kernel_version_changed() -> None:
    points = [{"run": "r1", "value": 908.0, "release": "6.12.117+"},
              {"run": "r2", "value": 908.0, "release": "6.12.117+"},
              {"run": "r3", "value": 910.0, "release": "6.12.118+"},
              {"run": "r4", "value": 910.0, "release": None}]
    assert nightly.version_changes(points) == [("r3", 910.0, "6.12.118+")]
