"""Two kernels' world-switch round-trip functions side by side: each function's
instruction count in vmlinux and the callees one has and the other lacks
(orchestrator.disasm.round_trip_code). Static code, not the path executed: it
points at where an icount difference comes from, it does not measure it.

    .venv/bin/python scripts/round_trip_code.py VMLINUX_A VMLINUX_B
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.disasm import round_trip_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vmlinux_a", type=Path)
    parser.add_argument("vmlinux_b", type=Path)
    args = parser.parse_args()
    a, b = round_trip_code(args.vmlinux_a), round_trip_code(args.vmlinux_b)
    print(f"{'function':32} {'A':>6} {'B':>6}  callees only in A / only in B")
    for function in a:
        fa, fb = a[function], b[function]
        count = [str(f.instructions) if f else "inlined" for f in (fa, fb)]
        only_a = sorted(set(fa.calls) - set(fb.calls)) if fa and fb else []
        only_b = sorted(set(fb.calls) - set(fa.calls)) if fa and fb else []
        print(f"{function:32} {count[0]:>6} {count[1]:>6}  -{' -'.join(only_a) or ''}"
              f"  +{' +'.join(only_b) or ''}".rstrip(" +-"))


if __name__ == "__main__":
    main()
