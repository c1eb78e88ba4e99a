"""The bad-input campaign as a table: per category, cases tried, failed cleanly, crashed/unclear.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bad_input.py [--verbose]

Runs the cases of ``tests/badinput/cases.py`` (the same table the test suite runs) in this process and
prints a markdown table; ``--verbose`` also lists each unclean case with what went wrong.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.badinput.cases import CASES, CATEGORIES
from tests.badinput.harness import Fixtures, run_case


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verbose", action="store_true", help="list every case that did not fail cleanly")
    ap.add_argument("--only", help="run only the cases whose category/name contains this")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows: dict[str, list[int]] = {c: [0, 0, 0] for c in CATEGORIES}
    unclean: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bad-input-") as root:
        fixtures = Fixtures(Path(root) / "models")
        for i, case in enumerate(CASES):
            if args.only and args.only not in f"{case.category}/{case.name}":
                continue
            tmp = Path(root) / f"case-{i:03d}"
            tmp.mkdir()
            outcome = run_case(case, tmp, fixtures)
            row = rows[case.category]
            row[0] += 1
            row[1 if outcome.clean else 2] += 1
            if args.verbose:
                print(f"{'ok ' if outcome.clean else 'BAD'} {case.category}/{case.name}: "
                      f"{outcome.problem or outcome.message}"[:400], file=sys.stderr, flush=True)
            if not outcome.clean:
                unclean.append(f"- {case.category}/{case.name}: {outcome.problem}")
    print("| category | cases tried | failed cleanly | crashed/unclear |")
    print("| --- | ---: | ---: | ---: |")
    for cat, (n, ok, bad) in rows.items():
        print(f"| {cat} | {n} | {ok} | {bad} |")
    total = [sum(r[i] for r in rows.values()) for i in range(3)]
    print(f"| **total** | **{total[0]}** | **{total[1]}** | **{total[2]}** |")
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.verbose and unclean:
        print("\n" + "\n".join(unclean))
    return 0 if total[2] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
