"""Reports rendered from case data alone (results.json): the terminal summary,
report.md, compare.json and measurements.png.

A run with several kernels compares each with its first kernel; `orchestrator
compare` compares two runs the same way (orchestrator.compare).
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.compare import ExplainerFor, Side, by_kernel, compare
from orchestrator.results import DIFFERS
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, SKIP, Case


def summary_table(cases: list[Case]) -> str:
    """Kernels as rows, suites as columns: passed/total, with the other verdicts counted."""
    kernels = list(dict.fromkeys(c.kernel for c in cases))
    suites = list(dict.fromkeys(c.suite for c in cases))
    rows = [["kernel", *suites]]
    for kernel in kernels:
        row = [kernel]
        for suite in suites:
            members = [c for c in cases if c.kernel == kernel and c.suite == suite]
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


def _figure(unit: str, side: dict) -> str:
    if side["boots"] == 0:  # exact figure
        return f"{side['median']:.1f} {unit}"
    return f"{side['median']:.0f} {unit} (IQR {side['q1']:.0f}-{side['q3']:.0f})"


def headline(comparisons: list[dict]) -> list[str]:
    """One line per measurement and comparison, then the count of differing cases."""
    lines = []
    for comp in comparisons:
        for cid, c in comp["measurements"].items():
            lines.append(f"{cid}: {comp['a']} {_figure(c['unit'], c['a'])}, {comp['b']}"
                         f" {_figure(c['unit'], c['b'])}, {c['difference']:+.1f} {c['unit']}:"
                         f" {c['verdict']}")
        lines.append(f"{comp['b']} vs {comp['a']}: {len(comp['differences'])} case(s)"
                     " behave differently")
    return lines


def kernel_versions(kernels: dict[str, dict], cases: list[Case]) -> list[str]:
    """report.md's lines naming each kernel's version, source and the expectations its
    cases were judged by (or that there were none: the cases' details.expectations)."""
    if not kernels:
        return []
    lines = ["| kernel | version | source | judged by |", "|---|---|---|---|"]
    for name, built in kernels.items():
        judged_by = sorted({str(c.details["expectations"]) for c in cases
                            if c.kernel == name.rsplit(":", 1)[-1] and
                            c.details.get("expectations")})
        lines.append(f"| {name} | {built.get('release') or 'unknown'}"
                     f" | {built.get('source') or '-'} | {'; '.join(judged_by) or '-'} |")
    return [*lines, ""]


def _changes(changes: list[dict]) -> list[str]:
    lines = [f"Case by case: {len(changes)} change(s)"
             f" ({sum(bool(c['explained']) for c in changes)} explained)", ""]
    for c in changes:
        why = f"{c['kind']}: {c['why']}"
        lines.append(f"- `{c['id']}`: {why}" + (f" -- {c['explained']}" if c["explained"]
                                                  else " -- not explained by the rig's data"))
    return [*lines, ""]


def markdown(title: str, cases: list[Case], comparisons: list[dict],
             kernels: dict[str, dict] | None = None) -> str:
    lines = [f"# {title}", "", *kernel_versions(kernels or {}, cases), "```", summary_table(cases),
             "```", ""]
    for comp in comparisons:
        versions = (f" ({comp['b_release']} against {comp['a_release']})"
                    if comp.get("a_release") and comp["a_release"] != comp.get("b_release")
                    else "")
        lines += [f"## {comp['b']} against {comp['a']}{versions}", ""]
        measured = comp["measurements"]
        if measured:
            exact = {c["method"] for c in measured.values()} == {"exact"}
            lines += ["Figures are emulated (QEMU TCG"
                      + (", -icount shift=0: instructions, exact)" if exact
                         else ", QEMU's clock: not hardware time)") + ":", "",
                      f"| case | {comp['a']} | {comp['b']} | difference | ratio (95% CI)"
                      " | p | verdict |", "|---|---|---|---|---|---|---|"]
            for cid, c in measured.items():
                ci = (f" ({c['ci_low']:.3f}-{c['ci_high']:.3f})" if c["ci_low"] is not None
                      else "")
                p = f"{c['p_value']:.3g}" if c["p_value"] is not None else "-"
                lines.append(f"| {cid} | {_figure(c['unit'], c['a'])}"
                             f" | {_figure(c['unit'], c['b'])}"
                             f" | {c['difference']:+.1f} {c['unit']} | {c['ratio']:.4f}{ci}"
                             f" | {p} | **{c['verdict']}** |")
            lines += ["", "Rules: " + "; ".join(sorted({c["rule"] for c in measured.values()})),
                      ""]
        else:
            lines += ["No measurement on both sides.", ""]
        if versions:  # across kernel versions: every kind of change, explained
            lines += _changes(comp["changes"])
            continue
        diffs = comp["differences"]
        lines += [f"Cases whose behaviour differs: {len(diffs)}", ""]
        lines += [f"- `{d['id']}`: {d['reason']}" for d in diffs]
        lines.append("")
    return "\n".join(lines)


def plot(path: Path, sides: list[Side]) -> bool:
    """Per measured case, each side's samples as a box; False if nothing is measured."""
    measured = sorted({c.id for s in sides for c in s.cases if c.measurement})
    if not measured:
        return False
    import matplotlib  # here, not at the top: its import costs every run ~0.5 s

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(measured), figsize=(5 * len(measured), 4), squeeze=False)
    for ax, cid in zip(axes[0], measured, strict=True):
        data, labels, unit = [], [], ""
        for side in sides:
            for case in side.cases:
                if case.id == cid and case.measurement:
                    data.append([w for boot in case.measurement.samples for w in boot])
                    labels.append(side.label)
                    unit = case.measurement.unit
        ax.boxplot(data)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=15, fontsize=8)
        ax.set_title(cid)
        ax.set_ylabel(f"{unit} (emulated)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(out_dir: Path, title: str, cases: list[Case], pairs: list[tuple[Side, Side]],
          kernels: dict[str, dict] | None = None, explainer: ExplainerFor | None = None
          ) -> list[dict]:
    """Compare each (A, B) pair; write report.md, compare.json and measurements.png.
    kernels: name -> its manifest entry (version, source), for the report's table."""
    comparisons = [compare(a, b, explainer) for a, b in pairs]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps(comparisons, indent=2) + "\n")
    text = markdown(title, cases, comparisons, kernels)
    sides = list({s.label: s for pair in pairs for s in pair}.values())
    if plot(out_dir / "measurements.png", sides):
        text += "\n![per-window distributions of each measurement](measurements.png)\n"
    (out_dir / "report.md").write_text(text)
    return comparisons


def write_run(run_dir: Path, cases: list[Case], kernels: dict[str, dict],
              baselines: dict[str, str]) -> list[dict]:
    """A run's own report: each kernel against its baseline (baselines: kernel ->
    the first kernel of its source; kernels: the manifest's entries)."""
    by_name = by_kernel([c for c in cases if c.suite != DIFFERS])
    sides = {name: Side(name, mine, kernels.get(name, {}).get("release", ""))
             for name, mine in by_name.items()}
    pairs = [(sides[baselines[name]], side) for name, side in sides.items()
             if baselines.get(name, name) != name and baselines[name] in sides]
    return write(run_dir, f"Run {run_dir.name}", cases, pairs, kernels)
