"""Each role's table of variables, made from its meta/argument_specs.yml: the one place a variable is described.

    python -m workqueue.machine.role_docs           write the table into each roles/ROLE/README.md (make role-docs)
    python -m workqueue.machine.role_docs --check   say which READMEs differ from their specs, exit 1 (make lint)

The table sits between two marker lines in the role's README; the rest of the README is the
role's own prose. A variable taken by several of the role's entry points (tasks/main.yml,
tasks/absent.yml, ...) is one row, which names them.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
BEGIN = "<!-- variables: made from meta/argument_specs.yml by `make role-docs`; edit the spec, not this table -->"
END = "<!-- end of variables -->"


@dataclass
class Variable:
    default: str = ""
    description: str = ""
    required_by: list[str] = field(default_factory=list)
    entry_points: list[str] = field(default_factory=list)


def shown(value: Any) -> str:
    """A default as the table shows it: YAML's own spelling, in code quotes (a | escaped for the table)."""
    if value == "":
        text = '""'
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, list | dict):
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    else:
        text = str(value)
    return "`" + text.replace("|", "\\|") + "`"


def described(option: dict[str, Any]) -> str:
    """An option's description on one line, Ansible's C(...) markup as code, and its choices."""
    text = re.sub(r"C\(([^)]*)\)", r"`\1`", " ".join(str(option.get("description", "")).split()))
    if option.get("choices"):
        text += " One of " + ", ".join(f"`{choice}`" for choice in option["choices"]) + "."
    return text


def variables(spec_file: Path) -> dict[str, Variable]:
    """The role's variables in the order its entry points name them."""
    specs = yaml.safe_load(spec_file.read_text())["argument_specs"]
    found: dict[str, Variable] = {}
    for entry, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            variable = found.setdefault(name, Variable())
            variable.entry_points.append(entry)
            if option.get("required"):
                variable.required_by.append(entry)
            if not variable.default and "default" in option:
                variable.default = shown(option["default"])
            if not variable.description:
                variable.description = described(option)
    return found


def table(spec_file: Path) -> str:
    found = variables(spec_file)
    several = len({entry for variable in found.values() for entry in variable.entry_points}) > 1
    head = "| variable | default | meaning |" + (" taken by |" if several else "")
    rows = [head, "|---|---|---|" + ("---|" if several else "")]
    for name, variable in found.items():
        if variable.required_by:
            whom = ", ".join(f"`{e}`" for e in variable.required_by)
            default = "(required)" if variable.required_by == variable.entry_points else f"(required by {whom})"
        else:
            default = variable.default or "(none)"
        description = variable.description.replace("|", "\\|")
        row = f"| `{name}` | {default} | {description} |"
        if several:
            row += " " + ", ".join(f"`{e}`" for e in variable.entry_points) + " |"
        rows.append(row)
    return "\n".join([BEGIN, "", *rows, "", END])


def with_table(readme: str, made: str) -> str:
    """The README with its table (between the markers) replaced by the one made from the spec."""
    if BEGIN not in readme or END not in readme:
        raise ValueError("no table markers: put the two marker lines where the table goes")
    before, rest = readme.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    return before + made + after


def main(argv: list[str]) -> int:
    check = argv[1:] == ["--check"]
    if argv[1:] not in ([], ["--check"]):
        print("usage: python -m workqueue.machine.role_docs [--check]", file=sys.stderr)
        return 2
    differ = []
    for spec_file in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        readme_file = spec_file.parents[1] / "README.md"
        try:
            readme = readme_file.read_text()
            made = with_table(readme, table(spec_file))
        except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
            print(f"role_docs: {readme_file.relative_to(ROLES.parent)}: {exc}", file=sys.stderr)
            return 1
        if made != readme:
            differ.append(str(readme_file.relative_to(ROLES.parent)))
            if not check:
                readme_file.write_text(made)
    if check and differ:
        named = ", ".join(differ)
        print(f"role_docs: {named} differ from meta/argument_specs.yml: run make role-docs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
