"""A corpus of malformed rig.yaml files, and the config loader fuzzed.

Each malformed file must give exit 2 and one line naming the file and the
key or the problem, no traceback, and nothing created (no cache, no
results). Fuzzing: whatever the document, the loader returns a RigConfig
or raises BadInput, never anything else.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import cli, config
from orchestrator.errors import EXIT_BAD_INPUT, BadInput

REPO = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((REPO / "rig.yaml").read_text())


def doc_with(edit: Callable[[dict], None]) -> str:
    doc = copy.deepcopy(DEFAULT)
    edit(doc)
    return yaml.safe_dump(doc)


def setter(path: str, value: object) -> Callable[[dict], None]:
    """An edit that sets a key path like "qemu/smp" (list indexes as numbers)."""
    def edit(doc: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
        node = doc
        for part in parents:
            node = node[part]
        node[last] = value
    return edit


def deleter(path: str) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
        node = doc
        for part in parents:
            node = node[part]
        del node[last]
    return edit


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9))

# (name, rig.yaml text, what the error line must contain)
CORPUS: list[tuple[str, str | bytes, str]] = [
    ("empty", "", "(top level): got None, expected a mapping"),
    ("a list", "- 1\n- 2\n", "(top level): got [1, 2], expected a mapping"),
    ("invalid yaml", "qemu: [\n", "invalid YAML"),
    ("tab indentation", "qemu:\n\tsmp: 2\n", "invalid YAML"),
    ("binary", b"\x7fELF\x02\x01\x01\x00\xff\xfe", "not UTF-8 text"),
    ("latin-1", "qemu:\n  cpu: caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
    ("anchor bomb", BOMB, "YAML aliases; at most 64"),
    ("huge", "# " + "x" * (2 << 20) + "\n", "larger than 1024 KiB"),
    ("duplicate key", doc_with(lambda d: None).replace("qemu:", "qemu: {}\nqemu:", 1),
     "duplicate key 'qemu'"),
    ("unknown top key", doc_with(setter("extra", 1)), "(top level).extra: unknown key"),
    ("unknown qemu key", doc_with(setter("qemu/boot_timeout", 5)), "qemu.boot_timeout: unknown"),
    ("smp zero", doc_with(setter("qemu/smp", 0)), "qemu.smp: got 0"),
    ("smp huge", doc_with(setter("qemu/smp", 10**20)), "qemu.smp: got 1000000000"),
    ("smp string", doc_with(setter("qemu/smp", "two")), "qemu.smp: got 'two', expected an int"),
    ("smp bool", doc_with(setter("qemu/smp", True)), "qemu.smp: got True"),
    ("memory words", doc_with(setter("qemu/memory", "lots")), "qemu.memory: got 'lots'"),
    ("memory tiny", doc_with(setter("qemu/memory", "1M")), "qemu.memory: got '1M'"),
    ("memory huge", doc_with(setter("qemu/memory", "9T")), "qemu.memory: got '9T'"),
    ("cpu number", doc_with(setter("qemu/cpu", 5)), "qemu.cpu: got 5, expected a string"),
    ("tcg thread", doc_with(setter("qemu/tcg_thread", "dual")),
     "qemu.tcg_thread: got 'dual', expected single or multi"),
    ("boot timeout nan", doc_with(setter("timeouts/boot", float("nan"))), "timeouts.boot: got nan"),
    ("boot timeout zero", doc_with(setter("timeouts/boot", 0)), "timeouts.boot: got 0"),
    ("command timeout negative", doc_with(setter("timeouts/command", -1)),
     "timeouts.command: got -1"),
    ("job budget string", doc_with(setter("timeouts/job", "1h")), "timeouts.job: got '1h'"),
    ("no sources", doc_with(deleter("sources")), "sources: got None"),
    ("source both kinds", doc_with(setter("sources/debian-6.12/git", ".")),
     "sources.debian-6.12: got"),
    ("bogus debian package", doc_with(setter("sources/debian-6.12/debian_package",
                                             "linux-source-0.0-nope")),
     "sources.debian-6.12.debian_package: got 'linux-source-0.0-nope'"),
    ("debian version not a version", doc_with(setter("sources/debian-6.12/version", "7.3 && x")),
     "sources.debian-6.12.version: got '7.3 && x', expected a Debian version"),
    ("git source not a tree", doc_with(setter("sources/debian-6.12",
                                              {"git": "/nonexistent", "ref": "v1"})),
     "sources.debian-6.12.git: got '/nonexistent', expected a git tree"),
    ("no kernels", doc_with(setter("kernels", [])), "kernels: got [], expected a non-empty"),
    ("kernel without name", doc_with(deleter("kernels/0/name")), "kernels[0].name: got None"),
    ("kernel bad name", doc_with(setter("kernels/0/name", "a b")), "kernels[0].name: got 'a b'"),
    ("kernel twice", doc_with(setter("kernels/1/name", "b922307a-parent")),
     "kernels[1].name: got 'b922307a-parent', expected a name not used"),
    ("unknown source", doc_with(setter("kernels/0/source", "nope")),
     "kernels[0].source: got 'nope', expected one of the sources"),
    ("missing patch", doc_with(setter("kernels/0/patches", ["no/such.patch"])),
     "kernels[0].patches[0]: got 'no/such.patch', expected an existing file"),
    ("not a patch", doc_with(setter("kernels/0/patches", ["rig.yaml"])),
     "kernels[0].patches[0]: got"),
    ("patches not a list", doc_with(setter("kernels/0/patches", "x.patch")),
     "kernels[0].patches: got 'x.patch', expected a list"),
    ("unknown suite", doc_with(setter("suites/nope", {})), "suites.nope: unknown key"),
    ("suite not a mapping", doc_with(setter("suites/counters", [1])),
     "suites.counters: got [1], expected a mapping"),
    ("scounteren negative", doc_with(setter("suites/counters/scounteren", [-1])),
     "suites.counters.scounteren[0]: got -1"),
    ("scounteren too wide", doc_with(setter("suites/counters/scounteren", [0x1FFFFFFFF])),
     "suites.counters.scounteren[0]: got 8589934591"),
    ("scounteren empty", doc_with(setter("suites/counters/scounteren", [])),
     "suites.counters.scounteren: got [], expected a non-empty list"),
    ("perf_user_access 7", doc_with(setter("suites/isolation/perf_user_access", [7])),
     "suites.isolation.perf_user_access[0]: got 7, expected 0, 1 or 2"),
    ("exits negative", doc_with(setter("suites/isolation/exits", -5)),
     "suites.isolation.exits: got -5"),
    ("migrate string", doc_with(setter("suites/isolation/migrate", "yes")),
     "suites.isolation.migrate: got 'yes', expected true or false"),
    ("timer source unknown", doc_with(setter("suites/timer/sources", ["cosmic-ray"])),
     "suites.timer.sources[0]: got 'cosmic-ray'"),
    ("timer rounds above deadlines", doc_with(setter("suites/timer", {"deadlines": 10,
                                                                      "rounds": 11})),
     "suites.timer.rounds: got 11"),
    ("iterations float", doc_with(setter("suites/latency/iterations", 1e20)),
     "suites.latency.iterations: got 1e+20, expected an integer"),
    ("iterations not a multiple", doc_with(setter("suites/latency/iterations", 150)),
     "suites.latency.iterations: got 150, expected a multiple of 100"),
    ("latency test unknown", doc_with(setter("suites/latency/tests", ["warp"])),
     "suites.latency.tests[0]: got 'warp'"),
    ("wallclock with few boots", doc_with(setter("suites/latency", {"mode": "wallclock"})),
     "suites.latency.boots: got 2, expected >= 5 in wallclock mode"),
    ("enabled not a bool", doc_with(setter("suites/latency/enabled", "no")),
     "suites.latency.enabled: got 'no'"),
    # what an attacker would try (or a slip of the keyboard)
    ("name ending in a newline", doc_with(setter("kernels/0/name", "b922307a\n")),
     "kernels[0].name: got 'b922307a\\n', expected a name of at most 64"),
    ("name of 300 characters", doc_with(setter("kernels/0/name", "k" * 300)),
     "kernels[0].name: got 'kkkkk"),
    ("name with a slash", doc_with(setter("kernels/0/name", "x/../../..")),
     "kernels[0].name: got 'x/../../..'"),
    ("target name with $()", doc_with(setter("targets", {"$(reboot)": {"type": "ssh"}})),
     "targets: got '$(reboot)'"),
    ("aliases of long leaves", "qemu:\n  append:\n  - &l [" + ", ".join(["x" * 1000] * 6)
     + "]\n" + "".join(f"  - &a{i} [{', '.join(['*l' if i == 0 else f'*a{i - 1}'] * 4)}]\n"
                        for i in range(12)),
     "qemu.append: got [['xxxxx"),
    ("nested 20000 deep", "qemu: " + "[" * 20000 + "]" * 20000 + "\n",
     "line 1: nested deeper than 32 levels"),
    ("guest config null", doc_with(setter("guest", {"config": None})),
     "guest.config: got None, expected a list of config fragment files"),
    ("boot timeout infinite", doc_with(setter("timeouts/boot", float("inf"))),
     "timeouts.boot: got inf"),
    ("command timeout 1e308", doc_with(setter("timeouts/command", 1e308)),
     "timeouts.command: got 1e+308, expected a number of seconds > 0 and at most 604800"),
    ("job timeout 1e10", doc_with(setter("timeouts/job", 1e10)), "timeouts.job: got 10000000000"),
    ("memory with a newline", doc_with(setter("qemu/memory", "512M\n")),
     "qemu.memory: got '512M\\n'"),
    ("machine with a space", doc_with(setter("qemu/machine", "virt -device x")),
     "qemu.machine: got 'virt -device x', expected one word"),
    ("cpu with a newline", doc_with(setter("qemu/cpu", "rv64\n")), "qemu.cpu: got 'rv64\\n'"),
    ("icount with a quote", doc_with(setter("qemu/icount", "shift=0'")), "qemu.icount: got"),
    ("append with a newline", doc_with(setter("qemu/append", "quiet\nrig.run=/x")),
     "qemu.append: got 'quiet\\nrig.run=/x', expected one line"),
    ("git ref an option", doc_with(setter("sources/mine", {"git": str(REPO), "ref": "--output=x"})),
     "sources.mine.ref: got '--output=x'"),
]


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40
    assert len({name for name, _, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("name", "text", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_rig_yaml_is_one_line_and_exit_2(
        name: str, text: str | bytes, expected: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "images").symlink_to(REPO / "images")
    path = tmp_path / "rig.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    assert cli.main(["-c", str(path), "run"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err[:2000]  # one line
    assert err.startswith(f"orchestrator: error: {path}: "), err[:300]
    assert expected in err, err[:300]
    assert len(err) < 400 and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before  # no cache, no results


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
KEYS = ["qemu", "timeouts", "suites", "sources", "kernels", "cache_dir", "results_dir"]


def _load(tmp_path: Path, doc: object) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        config.load(path)
    except BadInput as exc:
        assert str(path) in exc.message and "\n" not in exc.message


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=values)
def test_any_document_loads_or_is_bad_input(tmp_path: Path, doc: object) -> None:
    _load(tmp_path, doc)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(KEYS), key=st.text(max_size=12), value=values,
       suite=st.sampled_from(["counters", "isolation", "latency", "kvm-host"]))
def test_any_mutation_of_the_default_loads_or_is_bad_input(
        tmp_path: Path, section: str, key: str, value: object, suite: str) -> None:
    doc = copy.deepcopy(DEFAULT)
    (tmp_path / "images").is_symlink() or (tmp_path / "images").symlink_to(REPO / "images")
    target = doc.setdefault(section, {})
    if section == "suites":
        target = target.setdefault(suite, {}) or {}
        doc["suites"][suite] = target
    if isinstance(target, dict):
        target[key] = value
    elif isinstance(target, list) and target:
        target[0] = value
    _load(tmp_path, doc)
