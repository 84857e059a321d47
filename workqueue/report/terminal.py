"""The report for a terminal: verdict first, then the workers and the tasks as aligned columns."""

from __future__ import annotations

from workqueue.report import tables
from workqueue.report.fates import RunReport


def render(report: RunReport) -> str:
    lines = [tables.heading(report), f"=> {report.verdict}", ""]
    if report.faults:
        lines += [f"fault: {line}" for line in tables.fault_lines(report)] + [""]
    if clocks := tables.clock_lines(report):
        lines += [f"clock: {line}" for line in clocks] + [""]
    lines += columns(tables.worker_header(report), tables.worker_rows(report))
    lines.append("")
    rows, left_out = tables.task_rows(report, all_tasks=False)
    lines += columns(tables.TASK_HEADER, rows)
    if left_out:
        lines.append(f"({left_out} tasks done at the first delivery are not listed here; the files list them)")
    if report.foreign:
        lines += ["", "Tasks from other producers (not part of the run):"]
        lines += columns(tables.FOREIGN_HEADER, tables.foreign_rows(report))
    lines += ["", tables.broker_line(report)]
    if report.missing:
        lines += ["", "What is missing:"] + [f"  ! {statement}" for statement in report.missing]
    return "\n".join(lines)


def columns(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join
    out = [line(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()]
    out.append(line("-" * width for width in widths))
    out += [line(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return out
