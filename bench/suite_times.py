"""Where the test suite's time goes: each module's time, from the JUnit XML that `make test` keeps, and
the playbooks its tests ran, from the log the tests keep beside it.

    python bench/suite_times.py [build/tests/junit.xml]

Prints a Markdown table (module, tests, seconds of its tests summed: setup, call and
teardown; then how many playbooks they ran on the virtual labs, how many of them site.yml,
and the seconds spent in them) and the run's wall time. The modules run in lanes side by
side (pytest-xdist, one lane per lab): the wall time is about the longest lane's, not the sum.
Playbooks started by the tests' other programs (`make demo`, a drill started on cue) are
counted in their tests' seconds, not as playbooks.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[1] / "build" / "tests" / "junit.xml"


@dataclass
class Module:
    tests: int = 0
    seconds: float = 0.0
    playbooks: int = 0
    sites: int = 0
    playbook_seconds: float = 0.0


def module_times(path: Path) -> tuple[dict[str, Module], float]:
    """Module -> its tests' count and seconds; and the run's wall time."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        raise ValueError(f"{path} holds no testsuite")
    modules: dict[str, Module] = defaultdict(Module)
    for case in suite.iter("testcase"):
        module = modules[case.get("classname", "?").rsplit(".", 1)[-1]]
        module.tests += 1
        module.seconds += float(case.get("time", 0))
    return modules, float(suite.get("time", 0))


def add_playbooks(modules: dict[str, Module], log: Path) -> None:
    """Count each module's playbook runs from the tests' log (tests/conftest.py writes it); none if absent."""
    if not log.exists():
        return
    for line in log.read_text().splitlines():
        try:
            run = json.loads(line)
            module = modules[Path(str(run["test"]).split("::")[0]).stem]
            seconds = float(run["seconds"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a killed run
        module.playbooks += 1
        module.sites += run.get("playbook") == "site.yml"
        module.playbook_seconds += seconds


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT
    try:
        modules, wall = module_times(path)
    except (OSError, ET.ParseError, ValueError) as exc:
        print(f"suite_times: cannot read {path}: {exc} (run make test first)", file=sys.stderr)
        return 1
    add_playbooks(modules, path.parent / "playbooks.jsonl")
    print("| module | tests | seconds | playbooks (site.yml) | seconds in playbooks |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, module in sorted(modules.items(), key=lambda item: -item[1].seconds):
        runs = f"{module.playbooks} ({module.sites})" if module.playbooks else ""
        spent = f"{module.playbook_seconds:.0f}" if module.playbooks else ""
        print(f"| {name} | {module.tests} | {module.seconds:.0f} | {runs} | {spent} |")
    total = sum(module.seconds for module in modules.values())
    tests = sum(module.tests for module in modules.values())
    print(f"\n{tests} tests, {total:.0f} s of tests in {wall:.0f} s of wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
