"""`orchestrator bisect`: git bisect over a kernel tree with the rig as the judge.

Each step builds the commit git bisect checked out (through the rig's
--shared clone, so the build is incremental and cached per commit), boots
it, runs what the predicate selects and answers git with good, bad, or skip
(125 in `git bisect run` terms) when the commit did not build or boot: an
infrastructure problem is never a verdict.

Predicates:
  SUITE                a suite, e.g. isolation: bad if any of its cases fails
  CASE_ID              one case or a glob, e.g. counters/pmu/VU/cycle/scounteren=0x0
  latency:TEST>+N      bad if TEST costs more than N instructions per round trip
                       over the good commit (icount mode)
  latency:TEST>xR      bad if its median is more than R times the good
                       commit's (wallclock mode)

The user's tree is left as found: whatever happens (success, failure,
Ctrl-C), `git bisect reset` restores the original checkout; the bisect log
is saved first, so `--resume BISECT_ID` replays it and carries on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator import plan, runner, validate
from orchestrator.config import GitSource, KernelSpec, RigConfig
from orchestrator.errors import BadInput
from orchestrator.progress import clock
from orchestrator.suites import SuiteConfig, registry
from orchestrator.suites.latency import TESTS as LATENCY_TESTS
from orchestrator.verdicts import ERROR, FAIL, Case

GOOD, BAD, SKIP = "good", "bad", "skip"
_LATENCY = re.compile(r"latency:([\w-]+)>(\+|x)(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Predicate:
    text: str
    only: str  # the case ids to run: a suite's glob, a case id, or a latency case
    threshold: float | None = None  # latency: allowed increase
    ratio: bool = False  # latency: threshold is a ratio (wallclock), not +instructions

    @property
    def latency(self) -> bool:
        return self.threshold is not None

    def suites(self, base: dict[str, SuiteConfig]) -> dict[str, SuiteConfig]:
        """A latency predicate measures in the mode its threshold is for."""
        if not self.latency:
            return base
        mode = "wallclock" if self.ratio else "icount"
        return {**base, "latency": dataclasses.replace(base["latency"], mode=mode)}


def parse_predicate(text: str, rig: RigConfig) -> Predicate:
    latency = _LATENCY.match(text)
    if latency:
        test, kind, number = latency.groups()
        if test not in LATENCY_TESTS:
            raise BadInput(f"--check {text!r}: no latency test {test!r}"
                           f" (tests: {', '.join(LATENCY_TESTS)})")
        return Predicate(text, f"latency/{test}", float(number), ratio=kind == "x")
    only = f"{text}/*" if text in registry() else text
    try:
        plan.make(rig, only=only)
    except BadInput:
        raise BadInput(f"--check {text!r}: expected a suite ({', '.join(registry())}),"
                       " a case id or glob (see 'orchestrator list'), or latency:TEST>+N /"
                       " latency:TEST>xR") from None
    return Predicate(text, only)


def git(tree: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise BadInput(f"git {' '.join(args)} in {tree}: {result.stderr.strip()}")
    return (result.stdout + result.stderr).strip()


@dataclass
class Step:
    commit: str
    verdict: str
    evidence: str
    figure: float | None = None
    seconds: float = 0.0


# what `git bisect log` writes for a bisection the rig started: comments, the start with
# two full commit ids, then one verdict per commit
_LOG_LINE = re.compile(r"#[^\x00-\x1f\x7f]*|git bisect start '[0-9a-f]{40}' '[0-9a-f]{40}'"
                       r"|git bisect (?:good|bad|skip) [0-9a-f]{40}")


def checked_log(path: Path) -> Path:
    """path, if every line is one the rig's own bisection writes (git replays it)."""
    text = validate.read_text(path, limit=4 << 20, errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        if line and not _LOG_LINE.fullmatch(line):
            raise BadInput(f"{path}:{number}: got {validate.shown(line)}, expected a line"
                           " of `git bisect log` for a bisection the rig started")
    return path


class Bisection:
    def __init__(self, rig: RigConfig, tree: Path, good: str, bad: str, predicate: Predicate,
                 out: Path) -> None:
        self.rig, self.tree, self.predicate, self.out = rig, tree, predicate, out
        self.good = git(tree, "rev-parse", "--verify", f"{good}^{{commit}}")
        self.bad = git(tree, "rev-parse", "--verify", f"{bad}^{{commit}}")
        self.started = time.monotonic()
        # one rig clone of this tree, whatever it is called
        self.source_name = "bisect-" + hashlib.sha256(str(tree).encode()).hexdigest()[:12]
        self.steps: dict[str, Step] = {}
        self._load_steps()

    # -- judging one commit ---------------------------------------------------

    def _step_rig(self, commit: str, index: str) -> tuple[RigConfig, KernelSpec]:
        spec = KernelSpec(name=f"commit-{commit[:12]}",
                          source=GitSource(self.source_name, self.tree, commit),
                          patches=(), config=self.rig.kernels[0].config)
        rig = dataclasses.replace(self.rig, kernels=(spec,),
                                  suites=self.predicate.suites(self.rig.suites),
                                  results_dir=self.out / f"step-{index}")
        return rig, spec

    def judge(self, commit: str, index: str) -> Step:
        if commit in self.steps:
            return self.steps[commit]
        started = time.monotonic()
        rig, spec = self._step_rig(commit, index)
        try:
            cases = runner.run(rig, [spec.name], self.predicate.only).cases
            step = self._verdict(commit, cases)
        except BadInput as exc:  # e.g. the config fragment does not fit this commit
            step = Step(commit, SKIP, f"untestable: {exc.message}")
        step.seconds = round(time.monotonic() - started, 1)
        self.steps[commit] = step
        self._save_steps()
        return step

    def _verdict(self, commit: str, cases: list[Case]) -> Step:
        errors = [c for c in cases if c.verdict == ERROR]
        if errors:
            return Step(commit, SKIP, f"untestable: {errors[0].reason}")
        if not self.predicate.latency:
            failed = [c for c in cases if c.verdict == FAIL]
            if failed:
                return Step(commit, BAD, f"{len(failed)} failing: " + "; ".join(
                    f"{c.id}: {c.reason}" for c in failed[:3]))
            return Step(commit, GOOD, f"{len(cases)} case(s), none failing")
        (case,) = cases
        assert case.measurement is not None
        figure, unit = case.measurement.value, case.measurement.unit
        step = Step(commit, GOOD, "", figure=figure)
        reference = self.steps.get(self.good)
        if reference is None or reference.figure is None:
            step.evidence = f"{case.id}: {figure:.1f} {unit}"
            return step  # this is the good commit itself, measured first
        threshold = self.predicate.threshold
        if self.predicate.ratio:
            change = figure / reference.figure
            shown, limit = f"x{change:.3f}", f"x{threshold}"
        else:
            change = figure - reference.figure
            shown, limit = f"{change:+.1f}", f"+{threshold:g}"
        step.verdict = BAD if change > threshold else GOOD
        step.evidence = (f"{case.id}: {figure:.1f} vs good {reference.figure:.1f}"
                         f" {unit} ({shown}, limit {limit})")
        return step

    # -- state on disk ------------------------------------------------------------

    def _load_steps(self) -> None:
        path = self.out / "steps.json"
        if path.is_file():  # foreign input: a resumed bisection's directory may be anyone's
            steps = validate.load_json(path, "bisect-steps-v1.json")
            for commit, step in steps.items():
                if step["commit"] != commit:
                    raise BadInput(f"{path}: {commit}.commit: got {step['commit']!r},"
                                   f" expected {commit!r}")
            self.steps = {c: Step(**s) for c, s in steps.items()}

    def _save_steps(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "steps.json").write_text(json.dumps(
            {c: dataclasses.asdict(s) for c, s in self.steps.items()}, indent=2) + "\n")

    def _progress(self, message: str) -> None:
        print(f"[bisect {clock(time.monotonic() - self.started)}] {message}", file=sys.stderr,
              flush=True)

    # -- the bisection ------------------------------------------------------------

    def run(self, resume: bool = False) -> dict:
        if git(self.tree, "status", "--porcelain", "--untracked-files=no"):
            raise BadInput(f"{self.tree}: has uncommitted changes; commit or stash them first")
        if (self.tree / ".git" / "BISECT_START").exists():
            raise BadInput(f"{self.tree}: a git bisect is already in progress there")
        for commit, want, label in ((self.good, GOOD, "good"), (self.bad, BAD, "bad")):
            self._progress(f"checking that the {label} commit {commit[:12]} is {want}")
            step = self.judge(commit, label)
            if step.verdict != want:
                raise BadInput(f"--{label} {commit[:12]} is {step.verdict}, not {want}:"
                               f" {step.evidence}")
        log = self.out / "bisect.log"
        try:
            if resume and log.is_file():
                git(self.tree, "bisect", "replay", str(checked_log(log)))
            else:
                git(self.tree, "bisect", "start", self.bad, self.good)
            return self._loop()
        finally:
            if (self.tree / ".git" / "BISECT_LOG").is_file():
                log.write_text(git(self.tree, "bisect", "log") + "\n")
            git(self.tree, "bisect", "reset", check=False)

    def _loop(self) -> dict:
        index = len([s for s in self.steps if s not in (self.good, self.bad)]) + 1
        while True:
            commit = git(self.tree, "rev-parse", "HEAD")
            title = git(self.tree, "log", "-1", "--format=%s", commit)
            self._progress(f"step {index}: {commit[:12]} {title}")
            step = self.judge(commit, str(index))
            self._progress(f"step {index}: {step.verdict} ({step.seconds:.0f}s): {step.evidence}")
            answer = git(self.tree, "bisect", step.verdict)
            left = re.search(r"Bisecting: (\d+) revisions? left", answer)
            if left:
                self._progress(f"{left.group(1)} commit(s) left to test")
            done = self._finished(answer)
            if done:
                return done
            index += 1

    def _finished(self, answer: str) -> dict | None:
        first = re.search(r"^([0-9a-f]{40}) is the first bad commit", answer, re.MULTILINE)
        if first:
            culprit = first.group(1)
            return self._result([culprit], answer)
        if "only 'skip'ped commits left to test" in answer:
            candidates = re.findall(r"^([0-9a-f]{40})$", answer, re.MULTILINE)
            return self._result(candidates, answer)
        return None

    def _result(self, candidates: list[str], answer: str) -> dict:
        result = {
            "first_bad": candidates[0] if len(candidates) == 1 else None,
            "candidates": candidates,
            "subjects": {c: git(self.tree, "log", "-1", "--format=%s", c) for c in candidates},
            "check": self.predicate.text,
            "good": self.good, "bad": self.bad,
            "steps": {c: dataclasses.asdict(s) for c, s in self.steps.items()},
            "seconds": round(time.monotonic() - self.started, 1),
            "git": answer,
        }
        (self.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        return result
