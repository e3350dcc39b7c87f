"""Reports rendered from case data alone (results.json): the terminal summary,
report.md, compare.json and measurements.png.

A run with several kernels compares each with its first kernel; `orchestrator
compare` compares two runs the same way (orchestrator.compare). Each side of a
comparison is its own row and its own box: two runs of one kernel are never
summed into one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.compare import ExplainerFor, Side, by_kernel, compare
from orchestrator.results import DIFFERS, read_manifest
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, SKIP, Case

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_NAME = "measurements.png"


def _table(groups: dict[str, list[Case]]) -> str:
    """Groups (a kernel, or a side of a comparison) as rows, suites as columns:
    passed/total, with the other verdicts counted."""
    suites = list(dict.fromkeys(c.suite for cases in groups.values() for c in cases))
    rows = [["kernel", *suites]]
    for name, cases in groups.items():
        row = [name]
        for suite in suites:
            members = [c for c in cases if c.suite == suite]
            cell = f"{sum(c.verdict == PASS for c in members)}/{len(members)} pass" if members \
                else "-"
            for verdict in (KNOWN_DEVIATION, SKIP, FAIL, ERROR):
                count = sum(c.verdict == verdict for c in members)
                if count:
                    cell += f", {count} {verdict}"
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_table(cases: list[Case]) -> str:
    """Kernels as rows, suites as columns."""
    return _table(by_kernel(cases))


# What a run directory may hold that a script reads, in the order listed.
RUN_FILES = ("results.json", "junit.xml", "results.ktap", "kcidb.json", "manifest.json",
             "report.md", "compare.json", PLOT_NAME, "changes.json", "trend.png")


def run_summary(run_dir: Path, cases: list[Case], code: int) -> dict[str, Any]:
    """A run as `--json` prints it: where it is, its exit code, counts per kernel and
    verdict, and the files it has."""
    counts: dict[str, dict[str, int]] = {}
    for case in cases:
        kernel = counts.setdefault(case.kernel, {})
        kernel[case.verdict] = kernel.get(case.verdict, 0) + 1
    return {"run_id": run_dir.name, "dir": str(run_dir.resolve()), "exit_code": code,
            "kernels": counts,
            "files": {name: str((run_dir / name).resolve()) for name in RUN_FILES
                      if (run_dir / name).is_file()}}


def _figure(unit: str, side: dict) -> str:
    if side["boots"] == 0:  # exact figure
        return f"{side['median']:.1f} {unit}"
    return f"{side['median']:.0f} {unit} (IQR {side['q1']:.0f}-{side['q3']:.0f})"


def _cases_only(comp: dict) -> str:
    parts = [f"{len(comp[key])} {key}" for key in ("gone", "new") if comp.get(key)]
    return f" ({', '.join(parts)} case(s): not compared)" if parts else ""


def headline(comparisons: list[dict]) -> list[str]:
    """One line per measurement and comparison, then the count of differing cases
    and of the cases only one side has."""
    lines = []
    for comp in comparisons:
        for cid, c in comp["measurements"].items():
            lines.append(f"{cid}: {comp['a']} {_figure(c['unit'], c['a'])}, {comp['b']}"
                         f" {_figure(c['unit'], c['b'])}, {c['difference']:+.1f} {c['unit']}:"
                         f" {c['verdict']}")
        lines.append(f"{comp['b']} vs {comp['a']}: {len(comp['differences'])} case(s)"
                     f" behave differently{_cases_only(comp)}")
    return lines


def _kernels_section(kernels: dict[str, dict[str, Any]]) -> list[str]:
    """Which kernels ran: release (uname -r), source, patches, build key."""
    if not kernels:
        return []
    lines = ["## Kernels", "", "| kernel | release | source | patches | build key |",
             "|---|---|---|---|---|"]
    for label, built in kernels.items():
        patches = ", ".join(built.get("patches") or {}) or "-"
        lines.append(f"| {label} | {built.get('release') or '-'} | {built.get('source') or '-'}"
                     f" | {patches} | {str(built.get('key') or '-')[:16]} |")
    return [*lines, ""]


def _skips_section(sides: list[Side]) -> list[str]:
    """Each reason cases were skipped for, with the cases and the sides they were skipped on."""
    reasons: dict[str, dict[str, list[str]]] = {}
    for side in sides:
        for case in side.cases:
            if case.verdict == SKIP:
                reasons.setdefault(case.reason or "(no reason given)", {}).setdefault(
                    case.id, []).append(side.label)
    if not reasons:
        return []
    total = sum(len(ids) for ids in reasons.values())
    lines = ["## Skipped cases", "",
             f"{total} case(s) skipped, for {len(reasons)} reason(s) (the cases did not run:"
             " a feature the kernel or the machine lacks, a setting):", ""]
    for reason, ids in sorted(reasons.items(), key=lambda item: -len(item[1])):
        on = sorted({label for labels in ids.values() for label in labels})
        lines.append(f"- {reason}: {len(ids)} case(s), on {', '.join(on)}: "
                     + ", ".join(f"`{cid}`" for cid in ids))
    return [*lines, ""]


def _measurement_table(comp: dict) -> list[str]:
    measured = comp["measurements"]
    if not measured:
        return ["No measurement on both sides.", ""]
    exact = {c["method"] for c in measured.values()} == {"exact"}
    lines = ["Figures are emulated (QEMU TCG"
             + (", -icount shift=0: instructions, exact)" if exact
                else ", QEMU's clock: not hardware time)") + ":", "",
             f"| case | {comp['a']} | {comp['b']} | difference | ratio (95% CI) | p | verdict |",
             "|---|---|---|---|---|---|---|"]
    for cid, c in measured.items():
        ci = f" ({c['ci_low']:.3f}-{c['ci_high']:.3f})" if c["ci_low"] is not None else ""
        p = f"{c['p_value']:.3g}" if c["p_value"] is not None else "-"
        lines.append(f"| {cid} | {_figure(c['unit'], c['a'])} | {_figure(c['unit'], c['b'])}"
                     f" | {c['difference']:+.1f} {c['unit']} | {c['ratio']:.4f}{ci}"
                     f" | {p} | **{c['verdict']}** |")
    return [*lines, "", "Rules: " + "; ".join(sorted({c["rule"] for c in measured.values()})),
            ""]


def _changes(changes: list[dict]) -> list[str]:
    """A cross-version comparison's changes, case by case, with their explanations."""
    lines = [f"Case by case: {len(changes)} change(s)"
             f" ({sum(bool(c['explained']) for c in changes)} explained)", ""]
    for c in changes:
        lines.append(f"- `{c['id']}`: {c['kind']}: {c['why']}"
                     + (f" -- {c['explained']}" if c["explained"]
                        else " -- not explained by the rig's data"))
    return [*lines, ""]


def markdown(title: str, sides: list[Side], comparisons: list[dict],
             kernels: dict[str, dict[str, Any]] | None = None) -> str:
    lines = [f"# {title}", "", "```", _table({s.label: s.cases for s in sides}), "```", "",
             *_kernels_section(kernels or {})]
    for comp in comparisons:
        versions = (f" ({comp['b_release']} against {comp['a_release']})"
                    if comp.get("a_release") and comp["a_release"] != comp.get("b_release")
                    else "")
        lines += [f"## {comp['b']} against {comp['a']}{versions}", "",
                  *_measurement_table(comp)]
        if versions:  # across kernel versions: every kind of change, explained
            lines += _changes(comp["changes"])
            continue
        diffs = comp["differences"]
        lines += [f"Cases whose behaviour differs: {len(diffs)}"
                  + (" (of the cases both sides ran)" if comp["gone"] or comp["new"] else ""),
                  ""]
        lines += [f"- `{d['id']}`: {d['reason']}" for d in diffs]
        for key, side, meaning in (("gone", comp["a"], f"not in {comp['b']}"),
                                   ("new", comp["b"], f"not in {comp['a']}")):
            if comp[key]:
                lines += ["", f"Cases {key}: {len(comp[key])} (in {side}, {meaning})", ""]
                lines += [f"- `{cid}`" for cid in comp[key]]
        lines.append("")
    lines += _skips_section(sides)
    return "\n".join(lines)


# -- measurements.png ------------------------------------------------------------

def _windows(case: Case) -> list[float]:
    assert case.measurement is not None
    return [w for boot in case.measurement.samples for w in boot]


def _verdict_lines(cid: str, comparisons: list[dict]) -> list[str]:
    lines = []
    for comp in comparisons:
        c = comp["measurements"].get(cid)
        if c:
            lines.append(f"{comp['b']} vs {comp['a']}: {c['verdict']}"
                         f" ({c['difference']:+.1f} {c['unit']})")
    return lines


def _axis_limits(per_side: list[list[float]], reported: list[float]) -> tuple[float, float]:
    """Every reported figure and each side's windows up to its whiskers (1.5 IQR beyond
    the quartiles, as a box plot draws them): a few outlying windows (an interrupt in
    one window) must not squash the figures compared into one line."""
    import numpy as np

    low, high = min(reported), max(reported)
    for windows in per_side:
        if windows:
            q1, q3 = np.percentile(windows, [25, 75])
            low = min(low, max(q1 - 1.5 * (q3 - q1), min(windows)))
            high = max(high, min(q3 + 1.5 * (q3 - q1), max(windows)))
    pad = (high - low) * 0.25 or abs(high) * 0.02 or 1.0
    return float(low - pad), float(high + pad)


def measurement_figure(title: str, sides: list[Side], comparisons: list[dict]) -> Figure | None:
    """Per measured case, one panel: each side's windows (points, or a box for a
    distribution), its reported figure marked and written, and each comparison's
    verdict in the panel's title; None if nothing is measured."""
    measured = list(dict.fromkeys(c.id for s in sides for c in s.cases if c.measurement))
    if not measured:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(measured), 4.8))
    axes = fig.subplots(1, len(measured), squeeze=False)[0]
    for ax, cid in zip(axes, measured, strict=True):
        mine = [(i, s.label, c) for i, s in enumerate(sides, start=1)
                for c in s.cases if c.id == cid and c.measurement]
        unit = mine[0][2].measurement.unit
        windows = [w for _, _, case in mine for w in _windows(case)]
        reported = [case.measurement.value for _, _, case in mine]
        for position, _, case in mine:
            values = _windows(case)
            beside = position  # where the figure is written: right of its box or mark
            if case.measurement.method == "distribution" and values:
                ax.boxplot([values], positions=[position], widths=0.5, showfliers=False)
                beside = position + 0.25
            elif values:
                ax.plot([position] * len(values), values, linestyle="none", marker="_",
                        markersize=14, alpha=0.3, color="grey")
            ax.plot([position], [case.measurement.value], linestyle="none", marker="D",
                    color="tab:red", label="reported figure" if position == mine[0][0] else None)
            ax.annotate(f"{case.measurement.value:.1f}", (beside, case.measurement.value),
                        xytext=(8, 0), textcoords="offset points", va="center", fontsize=9)
        low, high = _axis_limits([_windows(case) for _, _, case in mine], reported)
        ax.set_ylim(low, high)
        outside = sum(not low <= w <= high for w in windows)
        if outside:
            ax.text(0.02, 0.02, f"{outside} window(s) off the scale", transform=ax.transAxes,
                    fontsize=7, color="grey")
        ax.set_xticks([p for p, _, _ in mine], [label for _, label, _ in mine], rotation=12,
                      fontsize=7)
        ax.set_xlim(0.5, len(sides) + 0.5)
        ax.set_title("\n".join([cid, *_verdict_lines(cid, comparisons)]), fontsize=9)
        ax.set_ylabel(f"{unit} (emulated)")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write(out_dir: Path, title: str, sides: list[Side], pairs: list[tuple[Side, Side]],
          kernels: dict[str, dict[str, Any]] | None = None,
          explainer: ExplainerFor | None = None) -> list[dict]:
    """Compare each (A, B) pair; write report.md, compare.json and measurements.png.
    kernels: what the manifest says of each side's kernel (release, source, patches);
    explainer: what explains a change between two kernel versions (expectations)."""
    comparisons = [compare(a, b, explainer) for a, b in pairs]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps(comparisons, indent=2) + "\n")
    text = markdown(title, sides, comparisons, kernels)
    fig = measurement_figure(title, sides, comparisons)
    if fig is not None:
        fig.savefig(out_dir / PLOT_NAME, dpi=100)
        text += (f"\n![each measurement: the windows, the reported figure and the verdict]"
                 f"({PLOT_NAME})\n")
    (out_dir / "report.md").write_text(text)
    return comparisons


def write_run(run_dir: Path, cases: list[Case], baselines: dict[str, str]) -> list[dict]:
    """A run's own report: each kernel against its baseline (baselines: kernel -> the
    first kernel of its source, compare.baselines)."""
    kernels = by_kernel([c for c in cases if c.suite != DIFFERS])
    built = read_manifest(run_dir).get("kernels", {})
    sides = {name: Side(name, mine, str((built.get(name) or {}).get("release") or ""))
             for name, mine in kernels.items()}
    pairs = [(sides[baselines[name]], side) for name, side in sides.items()
             if baselines.get(name, name) != name and baselines[name] in sides]
    return write(run_dir, f"Run {run_dir.name}", list(sides.values()), pairs,
                 {name: built[name] for name in kernels if name in built})
