"""The rig's own cost: wall time of a warm (and, with --cold, a cold)
`orchestrator run`, with each kernel's build time, each boot's time to
ready, each suite's time and the peak memory of the orchestrator and its
largest child (QEMU), as figures: the median of --repeat runs (default 3)
with min and max. Nothing is asserted.

    .venv/bin/python scripts/bench.py [--cold] [--repeat N] [-c rig.yaml] [--kernel K]...

--cold runs first with an empty cache directory each time (tarball
extraction, both kernel builds with an empty ccache, busybox download,
guest tests), then warm with the same cache. Without it, only warm runs
with your cache.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed_run(config: Path, kernels: list[str], env: dict[str, str]) -> dict:
    cmd = [sys.executable, "-m", "orchestrator", "-c", str(config), "run"]
    for kernel in kernels:
        cmd += ["--kernel", kernel]
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    match = re.search(r"^results: (\S+) \(exit \d+\)$", result.stdout, re.MULTILINE)
    if not match:
        sys.exit(f"bench: the run gave no results (exit {result.returncode}):\n"
                 f"{result.stderr[-2000:]}")
    run_dir = Path(match.group(1))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cases = json.loads((run_dir / "results.json").read_text())["cases"]
    kernels = {}
    for name, k in manifest["kernels"].items():
        suites: dict[str, float] = {}
        for case in cases:
            if case["kernel"] == name:
                suites[case["suite"]] = round(suites.get(case["suite"], 0) + case["duration"], 2)
        kernels[name] = {"build_seconds": k["build_seconds"], "cached": k["cached"],
                         "boot_seconds": [b for t in k["targets"].values()
                                          for b in t["boot_seconds"]],
                         "suite_seconds": suites}
    return {"wall_seconds": round(seconds, 1), "exit": result.returncode,
            "run_dir": str(run_dir), "kernels": kernels,
            "boots": len(list(run_dir.glob("*/*.console.log"))),
            "peak_rss_mib": manifest["peak_rss_mib"]}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": min(values),
            "max": max(values)}


def summarize(runs: list[dict]) -> dict:
    """Median, min and max over runs of the wall time, each suite's time per kernel
    and the peak memory."""
    suites = {(k, s) for r in runs for k, fig in r["kernels"].items() for s in fig["suite_seconds"]}
    return {
        "wall_seconds": spread([r["wall_seconds"] for r in runs]),
        "suite_seconds": {f"{k}/{s}": spread([r["kernels"][k]["suite_seconds"].get(s, 0.0)
                                              for r in runs]) for k, s in sorted(suites)},
        "peak_rss_mib": {who: spread([r["peak_rss_mib"][who] for r in runs])
                         for who in ("orchestrator", "qemu")},
    }


def show(label: str, figures: dict) -> None:
    print(f"{label}: {figures['wall_seconds']:.1f} s wall, exit {figures['exit']},"
          f" {figures['boots']} boots")
    for name, k in figures["kernels"].items():
        build = "cached" if k["cached"] else "built"
        boots = ", ".join(f"{b:.2f}" for b in k["boot_seconds"])
        suites = ", ".join(f"{s} {t:.1f} s" for s, t in k["suite_seconds"].items())
        print(f"  {name}: {build} (build {k['build_seconds']:.1f} s),"
              f" boot to ready per boot: {boots} s; suites: {suites}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, default=REPO / "rig.yaml")
    parser.add_argument("--kernel", action="append", default=[])
    parser.add_argument("--cold", action="store_true", help="first run with an empty cache")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind (default 3)")
    args = parser.parse_args()
    figures: dict = {"cold": [], "warm": []}
    for index in range(args.repeat):
        env = dict(os.environ)
        with tempfile.TemporaryDirectory(prefix="rig-bench-cache-") as fresh:
            if args.cold:
                env["RIG_CACHE_DIR"] = fresh
                figures["cold"].append(timed_run(args.config, args.kernel, env))
                show(f"cold {index + 1}", figures["cold"][-1])
            figures["warm"].append(timed_run(args.config, args.kernel, env))
            show(f"warm {index + 1}", figures["warm"][-1])
    for kind in ("cold", "warm"):
        if figures[kind]:
            figures[f"{kind}_summary"] = summary = summarize(figures[kind])
            wall = summary["wall_seconds"]
            print(f"{kind}: median {wall['median']:.1f} s (min {wall['min']:.1f},"
                  f" max {wall['max']:.1f}) over {len(figures[kind])} run(s)")
    out = REPO / "results" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
