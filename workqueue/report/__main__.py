"""Build the report of one run from what playbooks/report.yml gathered.

    python -m workqueue.report GATHERED [--run RUN_ID] [--out FOLDER] [--keep]

With --keep (as report.yml runs it), what the playbook read of each host comes on standard input and
is kept in GATHERED first. Prints the report and writes FOLDER/RUN_ID/report.md, report.json and
timeline.svg. Without --run, the report is of the newest run. Exit 1, with one
line that says what to fix, when there is no run to report on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from workqueue.report import fates, json_data, markdown, terminal, timeline
from workqueue.report.gathered import GatheredError, keep, read_folder
from workqueue.tasks import RUN_ID

PROG = "python -m workqueue.report"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("gathered", type=Path, help="the folder playbooks/report.yml wrote its findings to")
    parser.add_argument("--run", help="the run id the producer printed (default: the newest run)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where to write the files (default reports)")
    parser.add_argument(
        "--keep", action="store_true", help="first keep in GATHERED what report.yml passes on standard input"
    )
    args = parser.parse_args(argv)
    if args.run and not RUN_ID.match(args.run):
        parser.error(f"--run: {args.run!r} is not a run id like 20261127-120304-3fa2 (the producer prints it)")
    try:
        if args.keep:
            keep(args.gathered, _passed(sys.stdin.read()))
        gathered = read_folder(args.gathered)
    except GatheredError as exc:
        return _fail(str(exc))
    run_id = args.run or fates.last_run(gathered)
    seen = fates.runs_seen(gathered)
    if run_id is None or run_id not in seen:
        what = f"run {run_id} is not" if run_id else "no run is"
        known = f"runs found: {', '.join(seen[-5:])}" if seen else "; ".join(gathered.missing) or "no events at all"
        return _fail(f"{what} in the events of the lab's workers and producer ({known})")

    report = fates.build(gathered, run_id)
    folder = args.out / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "timeline.svg").write_text(timeline.render(report, time.time()), encoding="utf-8")
    (folder / "report.md").write_text(markdown.render(report, "timeline.svg"), encoding="utf-8")
    (folder / "report.json").write_text(json.dumps(json_data.as_dict(report), indent=2) + "\n", encoding="utf-8")
    print(terminal.render(report))
    print(f"\nfiles: {folder}/report.md, report.json, timeline.svg")
    return 0


def _passed(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise GatheredError(f"what report.yml passed is not JSON ({exc}): run it again") from None


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
