"""The report as a Markdown file, the timeline picture beside it."""

from __future__ import annotations

from html import escape

from workqueue.report import tables
from workqueue.report.fates import RunReport


def render(report: RunReport, picture: str) -> str:
    lines = [f"# {tables.heading(report)}", "", f"**{report.verdict}**", ""]
    if report.faults:
        lines += [f"Fault: {line}" for line in tables.fault_lines(report)] + [""]
    if clocks := tables.clock_lines(report):
        lines += [f"Clock: {line}" for line in clocks] + [""]
    if report.missing:
        lines += ["## What is missing", ""] + [f"- {statement}" for statement in report.missing] + [""]
    lines += ["## Timeline", "", f"![One lane per worker, a bar per task]({picture})", ""]
    lines += ["## Workers", "", *_table(tables.worker_header(report), tables.worker_rows(report)), ""]
    rows, _ = tables.task_rows(report, all_tasks=True)
    lines += ["## Tasks", "", *_table(tables.TASK_HEADER, rows), ""]
    if report.foreign:
        lines += ["## Tasks from other producers", "", "Not part of the run: received while it was the newest.", ""]
        lines += [*_table(tables.FOREIGN_HEADER, tables.foreign_rows(report)), ""]
    lines += ["## Broker", "", tables.broker_line(report), ""]
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(escape(cell, quote=False).replace("|", "\\|") for cell in cells) + " |"

    return [row(header), row(["---"] * len(header)), *(row(r) for r in rows)]
