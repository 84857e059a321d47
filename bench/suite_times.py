"""Where the test suite's time goes: each module's time, from the JUnit XML that `make test` keeps.

    python bench/suite_times.py [build/tests/junit.xml]

Prints a Markdown table (module, tests, seconds of its tests summed: setup, call and
teardown) and the run's wall time. The modules run in lanes side by side (pytest-xdist,
one lane per lab): the wall time is about the longest lane's, not the sum.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[1] / "build" / "tests" / "junit.xml"


def module_times(path: Path) -> tuple[dict[str, tuple[int, float]], float]:
    """Module -> (tests, seconds); and the run's wall time."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        raise ValueError(f"{path} holds no testsuite")
    counts: dict[str, int] = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    for case in suite.iter("testcase"):
        module = case.get("classname", "?").rsplit(".", 1)[-1]
        counts[module] += 1
        seconds[module] += float(case.get("time", 0))
    return {m: (counts[m], seconds[m]) for m in counts}, float(suite.get("time", 0))


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT
    try:
        times, wall = module_times(path)
    except (OSError, ET.ParseError, ValueError) as exc:
        print(f"suite_times: cannot read {path}: {exc} (run make test first)", file=sys.stderr)
        return 1
    print("| module | tests | seconds |\n| --- | ---: | ---: |")
    for module, (count, spent) in sorted(times.items(), key=lambda item: -item[1][1]):
        print(f"| {module} | {count} | {spent:.0f} |")
    total = sum(spent for _, spent in times.values())
    print(f"\n{sum(c for c, _ in times.values())} tests, {total:.0f} s of tests in {wall:.0f} s of wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
