"""A/B comparison of runs or kernels: report.md, compare.json, latency.png.

Latency figures come from the `latency/<test>` cases of results.json (their
per-boot windows); icount figures compare exactly, wall-clock ones through
orchestrator.stats. Counter cases whose behaviour differs are listed too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from orchestrator import expect, stats  # noqa: E402
from orchestrator.errors import BadInput  # noqa: E402
from orchestrator.results import PASS  # noqa: E402


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a kernel's cases in one run."""

    label: str  # e.g. "b922307a" or "RUN_A:b922307a"
    kernel: str
    cases: dict[str, dict]  # case id -> case record

    def latency(self) -> dict[str, dict]:
        return {cid.removeprefix("latency/"): case for cid, case in self.cases.items()
                if case["scenario"] == "latency" and case["verdict"] == PASS}


def load_cases(run_dir: Path) -> list[dict]:
    path = run_dir / "results.json"
    try:
        return json.loads(path.read_text())["cases"]
    except (OSError, ValueError, KeyError):
        raise BadInput(f"{path}: not a run's results (results.json missing or unreadable)"
                       ) from None


def sides_of(cases: list[dict], prefix: str = "") -> dict[str, Side]:
    kernels: dict[str, dict[str, dict]] = {}
    for case in cases:
        kernels.setdefault(case["kernel"], {})[case["id"]] = case
    return {k: Side(f"{prefix}{k}", k, by_id) for k, by_id in kernels.items()}


def compare_latency(a: Side, b: Side) -> dict[str, dict]:
    """Per latency test both sides measured: figures, difference, ratio, verdict."""
    out = {}
    a_lat, b_lat = a.latency(), b.latency()
    for test in sorted(set(a_lat) & set(b_lat)):
        ca, cb = a_lat[test]["extra"], b_lat[test]["extra"]
        if ca["mode"] != cb["mode"]:
            raise BadInput(f"latency/{test}: cannot compare {ca['mode']} ({a.label})"
                           f" with {cb['mode']} ({b.label})")
        if ca["mode"] == "icount":
            result = stats.compare_exact(ca["figure"], cb["figure"])
        else:
            result = stats.compare_wallclock(ca["per_boot"], cb["per_boot"])
        out[test] = {"mode": ca["mode"], "unit": ca["unit"], **result.to_json()}
    return out


def counter_differences(a: Side, b: Side) -> list[dict]:
    diffs = []
    for cid in sorted(set(a.cases) & set(b.cases)):
        ca, cb = a.cases[cid], b.cases[cid]
        if ca["scenario"] not in ("counters", "isolation"):
            continue
        reason = expect.compare_kernels({a.label: ca["observed"], b.label: cb["observed"]})
        if reason or ca["verdict"] != cb["verdict"]:
            diffs.append({"id": cid, a.label: [ca["verdict"], ca["observed"]],
                          b.label: [cb["verdict"], cb["observed"]],
                          "reason": reason or f"verdict {ca['verdict']} vs {cb['verdict']}"})
    return diffs


def compare(a: Side, b: Side) -> dict:
    return {"a": a.label, "b": b.label, "latency": compare_latency(a, b),
            "counter_differences": counter_differences(a, b)}


def _figure_text(unit: str, side: dict) -> str:
    if side["boots"] == 0:  # exact icount figure
        return f"{side['median']:.1f} {unit}"
    return f"{side['median']:.0f} {unit} (IQR {side['q1']:.0f}-{side['q3']:.0f})"


def markdown(title: str, comparisons: list[dict]) -> str:
    lines = [f"# {title}", ""]
    for comp in comparisons:
        lines += [f"## {comp['b']} against {comp['a']}", ""]
        if comp["latency"]:
            modes = {c["mode"] for c in comp["latency"].values()}
            lines += ["World-switch round trips, emulated under QEMU TCG"
                      + (" with -icount shift=0 (instructions, exact)" if modes == {"icount"}
                         else " (QEMU's clock, not hardware time)") + ":", "",
                      f"| test | {comp['a']} | {comp['b']} | difference | ratio (95% CI)"
                      " | p | verdict |", "|---|---|---|---|---|---|---|"]
            for test, c in comp["latency"].items():
                ci = (f" ({c['ci_low']:.3f}-{c['ci_high']:.3f})" if c["ci_low"] is not None
                      else "")
                p = f"{c['p_value']:.3g}" if c["p_value"] is not None else "-"
                lines.append(f"| {test} | {_figure_text(c['unit'], c['a'])}"
                             f" | {_figure_text(c['unit'], c['b'])}"
                             f" | {c['difference']:+.1f} {c['unit']} | {c['ratio']:.4f}{ci}"
                             f" | {p} | **{c['verdict']}** |")
            lines += ["", "Rules: " + "; ".join(sorted({c["rule"] for c in
                                                        comp["latency"].values()})), ""]
        else:
            lines += ["No latency figures on both sides.", ""]
        diffs = comp["counter_differences"]
        lines += [f"Counter and isolation cases whose behaviour differs: {len(diffs)}", ""]
        lines += [f"- `{d['id']}`: {d['reason']}" for d in diffs]
        lines.append("")
    return "\n".join(lines)


def plot(path: Path, sides: list[Side]) -> bool:
    """Per latency test, the per-window figures of each side; False if none."""
    tests = sorted({t for s in sides for t in s.latency()})
    if not tests:
        return False
    fig, axes = plt.subplots(1, len(tests), figsize=(5 * len(tests), 4), squeeze=False)
    for ax, test in zip(axes[0], tests, strict=True):
        data, labels, unit = [], [], ""
        for side in sides:
            case = side.latency().get(test)
            if case:
                windows = [w for boot in case["extra"]["per_boot"] for w in boot]
                data.append(windows)
                labels.append(side.label)
                unit = case["extra"]["unit"]
        ax.boxplot(data)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=15, fontsize=8)
        ax.set_title(test)
        ax.set_ylabel(f"{unit} per round trip (emulated)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(out_dir: Path, title: str, pairs: list[tuple[Side, Side]]) -> list[dict]:
    """Compare each (A, B) pair; write report.md, compare.json and latency.png."""
    comparisons = [compare(a, b) for a, b in pairs]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps(comparisons, indent=2) + "\n")
    text = markdown(title, comparisons)
    sides = list({s.label: s for pair in pairs for s in pair}.values())
    if plot(out_dir / "latency.png", sides):
        text += "\n![per-window latency distributions](latency.png)\n"
    (out_dir / "report.md").write_text(text)
    return comparisons
