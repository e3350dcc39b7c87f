"""KTAP: the kernel's test result format (Documentation/dev-tools/ktap.rst).

`parse` reads a program's output into a `Document`: its version line, plan,
results (with their SKIP/TODO/XFAIL/TIMEOUT/ERROR directive), the
diagnostic lines before each result, and nested subtests (an indented
version line opens one; the parent's result line closes it). Anything else
is an "unknown line", which KTAP allows and which never changes a result:
a selftest's own prints and the kernel's messages land there.

`write` renders a Document; `from_cases` makes one of a run's cases, one
subtest per kernel and suite, so the whole run reads as KTAP.

A test program's output is foreign input: parsing never raises. Subtests
nested deeper than MAX_NESTING, lines past MAX_LINES and numbers of more than
NUMBER_DIGITS digits are not results; `Document.problems` says what was left
out. Whatever a description or diagnostic holds, `write` puts it on one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, SKIP, Case

MAX_NESTING = 16  # kselftest and KUnit nest 2 or 3 levels
MAX_LINES = 200_000
NUMBER_DIGITS = 9  # a longer "number" is not a test number (nor an int() to convert)
VERSION = re.compile(r"(?:KTAP version (\d{1,9})|TAP version (\d{1,9}))\s*")
PLAN = re.compile(rf"1\.\.(\d{{1,{NUMBER_DIGITS}}})\s*(?:#\s*(.*))?")
RESULT = re.compile(rf"(ok|not ok)\s+(\d{{1,{NUMBER_DIGITS}}})(?!\d)\s*(?:-\s*)?([^#]*?)\s*"
                    r"(?:#\s*(.*))?")
DIRECTIVES = ("SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR")
BAIL_OUT = re.compile(r"Bail out!\s*(.*)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass
class Result:
    ok: bool
    number: int
    description: str
    directive: str | None = None  # one of DIRECTIVES
    reason: str = ""  # the diagnostic data after the directive (or after '#')
    diagnostics: list[str] = field(default_factory=list)  # '# ...' lines just before
    subtests: Document | None = None

    @property
    def verdict(self) -> str:
        """pass, fail, skip, xfail, todo, timeout or error."""
        if self.directive in ("SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR"):
            return self.directive.lower()
        return "pass" if self.ok else "fail"


@dataclass
class Document:
    version: str = ""  # e.g. "KTAP version 1"; "" when the output had none
    plan: int | None = None
    plan_directive: str | None = None  # "1..0 # SKIP reason" (kselftest's whole-program skip)
    plan_reason: str = ""
    results: list[Result] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)  # after the last result
    unknown: list[str] = field(default_factory=list)
    bail_out: str | None = None
    left_out: list[str] = field(default_factory=list)  # what the parser's limits skipped
    # (on the top-level document)

    def problems(self) -> list[str]:
        """Where the document breaks the grammar's rules on numbering and plan."""
        found = list(self.left_out)
        for expected, result in enumerate(self.results, start=1):
            if result.number != expected:
                found.append(f"result {result.description!r} is numbered {result.number},"
                             f" expected {expected}")
        if self.plan is not None and self.plan != len(self.results) and not self.plan_directive:
            found.append(f"plan 1..{self.plan} but {len(self.results)} result(s)")
        return found


def _split_directive(text: str | None) -> tuple[str | None, str]:
    if text is None:
        return None, ""
    text = text.strip()
    word, _, rest = text.partition(" ")
    if word.upper() in DIRECTIVES:
        return word.upper(), rest.strip()
    return None, text


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


class _Parser:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.pos = 0
        self.left_out: list[str] = []

    def document(self, indent: int, version: str, nesting: int = 0) -> Document:
        """Lines at `indent` until a result line at a lower indent ends the subtest."""
        doc = Document(version=version)
        pending: list[str] = []  # diagnostics waiting for their result
        child: Document | None = None  # a subtest waiting for its parent's result line
        while self.pos < len(self.lines):
            raw = self.lines[self.pos]
            depth, text = _indent(raw), raw.strip()
            if not text:
                self.pos += 1
                continue
            is_version = bool(VERSION.fullmatch(text))
            if depth < indent and (is_version or RESULT.fullmatch(text)):
                break  # the parent's line: this subtest is over
            self.pos += 1
            if is_version and not doc.version and not doc.results and doc.plan is None:
                doc.version = text  # output without a version line so far: this is ours
                continue
            if is_version and depth > indent and nesting + 1 >= MAX_NESTING:
                self.left_out.append(f"subtests nested deeper than {MAX_NESTING} levels"
                                    f" (line {self.pos})")
                self._skip_deeper(indent)
                continue
            if is_version and depth > indent:
                child = self.document(depth, text, nesting + 1)
                continue
            plan, result = PLAN.fullmatch(text), RESULT.fullmatch(text)
            if plan and doc.plan is None and not doc.results:
                doc.plan = int(plan.group(1))
                doc.plan_directive, doc.plan_reason = _split_directive(plan.group(2))
            elif result:
                directive, reason = _split_directive(result.group(4))
                doc.results.append(Result(
                    ok=result.group(1) == "ok", number=int(result.group(2)),
                    description=result.group(3).strip(), directive=directive, reason=reason,
                    diagnostics=pending, subtests=child))
                pending, child = [], None
            elif text.startswith("#"):
                pending.append(text[1:].strip())
            elif bail_out := BAIL_OUT.fullmatch(text):
                doc.bail_out = bail_out.group(1)
            else:
                doc.unknown.append(raw.rstrip())
        doc.diagnostics = pending
        return doc

    def _skip_deeper(self, indent: int) -> None:
        """Past the lines indented deeper than indent (a subtest too deep to read)."""
        while self.pos < len(self.lines) and (
                _indent(self.lines[self.pos]) > indent or not self.lines[self.pos].strip()):
            self.pos += 1


def parse(text: str) -> Document:
    """A program's output as KTAP. Output without a version line is still read
    (kselftest prints "1..0 # SKIP reason" alone when a program skips early)."""
    lines = text.replace("\r", "").splitlines()
    parser = _Parser(lines[:MAX_LINES])
    doc = parser.document(0, "")
    doc.left_out = parser.left_out
    if len(lines) > MAX_LINES:
        doc.left_out.append(f"output cut at {MAX_LINES} lines (of {len(lines)})")
    return doc


# -- writing ---------------------------------------------------------------

def _one_line(text: str) -> str:
    """Text as part of one KTAP line: a newline in a case id or a reason must not
    start a line of its own (it would read as another result)."""
    return _CONTROL.sub(" ", text).strip()


def _result_line(result: Result) -> str:
    line = f"{'ok' if result.ok else 'not ok'} {result.number}"
    if result.description:
        line += f" {_one_line(result.description).replace('#', '_')}"
    tail = " ".join(part for part in (result.directive or "", result.reason) if part)
    if tail:
        line += f" # {' '.join(_one_line(tail).split())}"
    return line


def write(doc: Document, indent: str = "") -> str:
    out = [indent + (doc.version or "KTAP version 1")]
    plan = f"1..{doc.plan if doc.plan is not None else len(doc.results)}"
    if doc.plan_directive:
        plan += f" # {doc.plan_directive} {doc.plan_reason}".rstrip()
    out.append(indent + plan)
    for result in doc.results:
        if result.subtests is not None:
            out.append(write(result.subtests, indent + "  ").rstrip("\n"))
        out += [f"{indent}# {_one_line(d)}" for d in result.diagnostics]
        out.append(indent + _result_line(result))
    out += [f"{indent}# {_one_line(d)}" for d in doc.diagnostics]
    return "\n".join(out) + "\n"


def _case_result(number: int, case: Case) -> Result:
    """How a rig verdict reads in KTAP: a known deviation is an XFAIL, never a plain ok."""
    reason = " ".join(case.reason.split())
    if case.verdict == PASS:
        return Result(True, number, case.id)
    if case.verdict == SKIP:
        return Result(True, number, case.id, "SKIP", reason)
    if case.verdict == KNOWN_DEVIATION:
        return Result(True, number, case.id, "XFAIL", " ".join(case.reason_with_rule.split()))
    if case.verdict == ERROR:
        return Result(False, number, case.id, "ERROR", reason)
    assert case.verdict == FAIL, case.verdict
    diagnostics = [line for line in (reason, f"log: {case.log}" if case.log else "") if line]
    return Result(False, number, case.id, diagnostics=diagnostics)


def group_name(case: Case) -> str:
    """A kernel's suite, as KTAP's subtest and JUnit's testsuite are named."""
    return f"{case.kernel}.{case.suite}"


def from_cases(cases: Iterable[Case]) -> Document:
    """One subtest per kernel and suite (named kernel.suite), in the order first seen."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(group_name(case), []).append(case)
    top = Document(version="KTAP version 1", plan=len(groups))
    for number, (name, members) in enumerate(groups.items(), start=1):
        sub = Document(version="KTAP version 1", plan=len(members),
                       results=[_case_result(i, c) for i, c in enumerate(members, start=1)])
        failed = any(not r.ok for r in sub.results)
        top.results.append(Result(not failed, number, name, subtests=sub))
    return top
