"""`orchestrator nightly`: the default job, then what changed since the previous run.

Which previous run: per kernel, the last complete (not `--only`) run in the
results store that holds a kernel of the same name; failing that, one that
holds the same build (same build key: source, patches, config fragments,
toolchain) under another name. A kernel matched by name whose build changed
is still compared (a nightly exists to notice what a new commit or patch
does) and its report names what changed in the build. A kernel with no
previous run has no baseline: every case is new, and a failing one is a new
failure.

Per kernel, each case is sorted into one kind of change:
- new failure: `fail` now, not `fail` before (or no case before);
- new error: `error` now, not before (infrastructure: the run exits 3);
- fixed: `fail` or `error` before, `pass`/`known-deviation`/`skip` now;
- changed deviation: a known deviation appeared, disappeared or changed rule;
- changed behaviour: same verdict, different outcome (the suite's `differs`);
- new case / gone case: the case exists on one side only;
and each measurement is compared with orchestrator.compare.measurements
(exact under icount; bootstrap CI and Mann-Whitney in wall-clock mode).

Exit code: the run's own meanings first (2 bad input, 3 infrastructure,
130 interrupted); else 1 when rig.yaml `nightly.fail_on` names a change that
happened (`new-failures`, `slower`, `gone-cases`: cases the previous run had
that this one lacks, e.g. a suite that stopped running), else 0: a failure
known from the previous night does not turn the nightly red again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import compare, store
from orchestrator.config import NightlyConfig
from orchestrator.errors import EXIT_INFRA, EXIT_OK, EXIT_TEST_FAILURE, BadInput
from orchestrator.suites import registry
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, Case

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KINDS = ("new-failures", "new-errors", "fixed", "changed-deviations", "changed-behaviour",
         "new-cases", "gone-cases")
SECTION = "## Since the previous run"
TREND_PNG = "trend.png"
BUILD_FIELDS = ("source", "patches", "config_sha256", "toolchain")


@dataclass
class Change:
    id: str
    before: str | None  # verdict, None: no such case
    after: str | None
    why: str


@dataclass
class KernelChanges:
    kernel: str
    baseline_run: str | None
    baseline_kernel: str | None
    build_changes: list[str] = field(default_factory=list)
    cases: dict[str, list[Change]] = field(default_factory=lambda: {k: [] for k in KINDS})
    measurements: dict[str, dict] = field(default_factory=dict)

    def count(self) -> int:
        moved = sum(m.get("verdict") not in ("same",) for m in self.measurements.values())
        return sum(len(v) for v in self.cases.values()) + moved

    def slower(self) -> list[str]:
        return [cid for cid, m in self.measurements.items() if m.get("verdict") == "slower"]


def _kind(before: Case | None, after: Case) -> tuple[str, str] | None:
    """(kind of change, why) for one case against its previous run, or None."""
    if before is None:
        if after.verdict == FAIL:
            return "new-failures", f"new case, fails: {after.reason}"
        if after.verdict == ERROR:
            return "new-errors", f"new case, error: {after.reason}"
        return "new-cases", f"new case: {after.verdict}"
    b, a = before.verdict, after.verdict
    if a == FAIL and b != FAIL:
        return "new-failures", f"{b} -> fail: {after.reason}"
    if a == ERROR and b != ERROR:
        return "new-errors", f"{b} -> error: {after.reason}"
    if b in (FAIL, ERROR) and a not in (FAIL, ERROR):
        return "fixed", f"{b} -> {a}"
    if KNOWN_DEVIATION in (a, b) and (a, after.rule) != (b, before.rule):
        return "changed-deviations", (f"{b}{f' ({before.rule})' if before.rule else ''} ->"
                                      f" {a}{f' ({after.rule})' if after.rule else ''}")
    if a == b and a not in compare.NOT_COMPARED:
        suite = registry().get(after.suite)
        why = suite.differs(before, after) if suite else (
            None if before.outcome == after.outcome else "outcome differs")
        if why:
            return "changed-behaviour", why
    return None


def changes(kernel: str, now: list[Case], before: list[Case] | None,
            baseline_run: str | None = None, baseline_kernel: str | None = None
            ) -> KernelChanges:
    """One kernel's cases against its previous run's (None: no previous run)."""
    found = KernelChanges(kernel, baseline_run, baseline_kernel)
    previous = {c.id: c for c in before or []}
    for case in now:
        kind = _kind(previous.get(case.id), case)
        if kind:
            found.cases[kind[0]].append(Change(case.id, previous[case.id].verdict
                                               if case.id in previous else None,
                                               case.verdict, kind[1]))
    current = {c.id for c in now}
    for cid, case in previous.items():
        if cid not in current:
            found.cases["gone-cases"].append(Change(cid, case.verdict, None, "no longer run"))
    for case in now:
        old = previous.get(case.id)
        if case.measurement is None or old is None or old.measurement is None:
            continue
        try:
            found.measurements.update(compare.measurements([old], [case]))
        except BadInput as exc:  # e.g. icount one night, wall clock the next
            found.measurements[case.id] = {"verdict": "not comparable", "why": exc.message}
    return found


def build_changes(before: store.StoredKernel, now: store.StoredKernel) -> list[str]:
    """What differs between two builds of a kernel, field by field; first the kernel's
    own version when it moved (e.g. a Debian update under the same source name)."""
    out = []
    if before.release and now.release and before.release != now.release:
        out.append(f"kernel changed: {before.release} -> {now.release}")
    for name in BUILD_FIELDS:
        old, new = getattr(before, name), getattr(now, name)
        if old != new:
            if isinstance(old, dict):
                gone = sorted(set(old) - set(new))
                added = sorted(set(new) - set(old))
                edited = sorted(k for k in set(old) & set(new) if old[k] != new[k])
                parts = [f"+{p}" for p in added] + [f"-{p}" for p in gone] + [
                    f"~{p}" for p in edited]
                out.append(f"patches {' '.join(parts)}")
            elif name == "source" and not str(new).startswith("git:"):
                out.append(f"source {old} -> {new}")  # a Debian package=version, whole
            else:
                out.append(f"{name} {str(old)[:24]} -> {str(new)[:24]}")
    return out


def since_previous(db: store.Store, run: store.StoredRun) -> list[KernelChanges]:
    """Every kernel of a stored run against its previous run (module docstring)."""
    found = []
    for name, kernel in db.kernels(run).items():
        previous = db.previous(run, kernel)
        if previous is None:
            found.append(changes(name, db.cases(run, name), None))
            continue
        earlier = db.kernels(previous)
        match = name if name in earlier else next(
            n for n, k in earlier.items() if k.build_key == kernel.build_key)
        found.append(changes(name, db.cases(run, name), db.cases(previous, match),
                             previous.run_id, match))
        found[-1].build_changes = build_changes(earlier[match], kernel)
    return found


def exit_code(run_code: int, found: list[KernelChanges], policy: NightlyConfig) -> int:
    if run_code == EXIT_INFRA:
        return EXIT_INFRA
    red = (any(k.cases[kind] for kind in ("new-failures", "gone-cases") if kind in policy.fail_on
               for k in found)
           or ("slower" in policy.fail_on and any(k.slower() for k in found)))
    return EXIT_TEST_FAILURE if red else EXIT_OK


# -- reporting -------------------------------------------------------------------

def to_json(found: list[KernelChanges]) -> list[dict[str, Any]]:
    return [{**asdict(k), "changes": k.count()} for k in found]


def _changes(n: int) -> str:
    return f"{n} change{'' if n == 1 else 's'}"


def _figure(m: dict, side: str) -> str:
    s = m[side]
    return (f"{s['median']:.1f}" if s["boots"] == 0 else
            f"{s['median']:.0f} (IQR {s['q1']:.0f}-{s['q3']:.0f})")


def markdown(found: list[KernelChanges], trends: list[dict], trend_png: str | None) -> str:
    total = sum(k.count() for k in found)
    lines = [SECTION, "", f"{_changes(total)}.", ""]
    for k in found:
        if k.baseline_run is None:
            lines += [f"### {k.kernel}: no previous run", ""]
        else:
            named = "" if k.baseline_kernel == k.kernel else f" (as {k.baseline_kernel})"
            lines += [f"### {k.kernel} against run {k.baseline_run}{named}:"
                      f" {_changes(k.count())}", ""]
        if k.build_changes:
            lines += ["Build changed: " + "; ".join(k.build_changes), ""]
        for kind, items in k.cases.items():
            if items:
                lines += [f"{kind}: {len(items)}", ""]
                lines += [f"- `{c.id}`: {c.why}" for c in items]
                lines.append("")
        if k.measurements:
            lines += ["| measurement | before | now | difference | verdict |",
                      "|---|---|---|---|---|"]
            for cid, m in k.measurements.items():
                if "a" not in m:
                    lines.append(f"| {cid} | - | - | - | {m['verdict']}: {m['why']} |")
                    continue
                lines.append(f"| {cid} | {_figure(m, 'a')} | {_figure(m, 'b')}"
                             f" | {m['difference']:+.1f} {m['unit']} | **{m['verdict']}** |")
            lines.append("")
    if trends:
        lines += ["### Trends", "", "| kernel | measurement | points | figures (oldest first) |",
                  "|---|---|---|---|"]
        for t in trends:
            figures = ", ".join(f"{p['value']:g}" for p in t["points"])
            lines.append(f"| {t['kernel']} | {t['case']} | {len(t['points'])}"
                         f" | {figures} {t['unit']} |")
        lines.append("")
        if trend_png:
            lines += [f"![each measurement per kernel over the last runs]({trend_png})", ""]
    return "\n".join(lines)


def summary(found: list[KernelChanges]) -> list[str]:
    lines = []
    for k in found:
        against = (f"against {k.baseline_run}" if k.baseline_run else "no previous run")
        kinds = ", ".join(f"{len(v)} {kind}" for kind, v in k.cases.items() if v)
        lines.append(f"{k.kernel} ({against}): {_changes(k.count())}"
                     + (f": {kinds}" if kinds else ""))
        lines += [f"  {change}" for change in k.build_changes]
        for c in k.cases["new-failures"]:
            lines.append(f"  new failure: {c.id}: {c.why}")
        gone = k.cases["gone-cases"]
        if gone:
            lines.append(f"  gone: {len(gone)} case(s) of {k.baseline_run} not run:"
                         f" {', '.join(c.id for c in gone[:5])}{', ...' if len(gone) > 5 else ''}")
        for cid in k.slower():
            m = k.measurements[cid]
            lines.append(f"  slower: {cid}: {m['difference']:+.1f} {m['unit']} ({m['rule']})")
    lines.append(f"{_changes(sum(k.count() for k in found))} since the previous run")
    return lines


# Kernels drawn in one panel: each its own marker and line style, and its points
# set a little apart, so two kernels with the same figures stay two visible series.
_MARKERS = ("o", "s", "^", "D", "v", "P")
_LINES = ("-", "--", ":", "-.")


def version_changes(points: list[dict]) -> list[tuple[str, float, str]]:
    """(run, value, new release) where a trend's kernel version changed."""
    changes = []
    for before, now in zip(points, points[1:], strict=False):
        if before.get("release") and now.get("release") and before["release"] != now["release"]:
            changes.append((now["run"], now["value"], now["release"]))
    return changes


def trend_figure(title: str, trends: list[dict]) -> Figure | None:
    """One panel per measurement, one series per kernel over the runs (oldest
    first); None if nothing is measured."""
    if not trends:
        return None
    from matplotlib.figure import Figure

    cases = list(dict.fromkeys(t["case"] for t in trends))
    fig = Figure(figsize=(5.5 * len(cases), 4.5))
    axes = fig.subplots(1, len(cases), squeeze=False)[0]
    for ax, cid in zip(axes, cases, strict=True):
        mine = [t for t in trends if t["case"] == cid]
        when = {p["run"]: p.get("recorded", 0) for t in mine for p in t["points"]}
        runs = sorted(when, key=lambda run: (when[run], run))
        width = 0.3 / max(len(mine) - 1, 1)
        for i, t in enumerate(mine):
            offset = (i - (len(mine) - 1) / 2) * width if len(mine) > 1 else 0.0
            xs = [runs.index(p["run"]) + offset for p in t["points"]]
            ys = [p["value"] for p in t["points"]]
            style = {"marker": _MARKERS[i % len(_MARKERS)],
                     "linestyle": _LINES[i % len(_LINES)], "label": t["kernel"]}
            if all("q1" in p for p in t["points"]):
                low = [p["value"] - p["q1"] for p in t["points"]]
                high = [p["q3"] - p["value"] for p in t["points"]]
                ax.errorbar(xs, ys, yerr=[low, high], capsize=3, **style)
            else:
                ax.plot(xs, ys, **style)
            for run, value, release in version_changes(t["points"]):
                ax.annotate(release, (runs.index(run) + offset, value), xytext=(0, 8),
                            textcoords="offset points", fontsize=6, ha="center",
                            arrowprops={"arrowstyle": "-"})
            ax.set_ylabel(f"{t['unit']} (emulated)")
        ax.set_xticks(range(len(runs)), runs, rotation=30, fontsize=7, ha="right")
        ax.set_title(cid, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write(run_dir: Path, found: list[KernelChanges], trends: list[dict]) -> None:
    """changes.json, trend.png, and the section appended to report.md."""
    (run_dir / "changes.json").write_text(json.dumps(
        {"kernels": to_json(found), "changes": sum(k.count() for k in found),
         "trends": trends}, indent=1) + "\n")
    fig = trend_figure(f"Trend up to run {run_dir.name}", trends)
    if fig is not None:
        fig.savefig(run_dir / TREND_PNG, dpi=100)
    png = TREND_PNG if fig is not None else None
    report = run_dir / "report.md"
    head = report.read_text() if report.is_file() else f"# Run {run_dir.name}\n"
    head = head.split("\n" + SECTION)[0]  # written again, e.g. by `nightly --from`
    report.write_text(head.rstrip("\n") + "\n\n" + markdown(found, trends, png))
