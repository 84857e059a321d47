"""This machine's Debian package sources, in either of apt's formats, as mmdebstrap needs them for a release.

apt reads the one-line format (``deb [options] URI SUITE COMPONENT...`` in
``sources.list`` and ``sources.list.d/*.list``) and the deb822 format
(``sources.list.d/*.sources``). The images are built from the same mirrors
this machine uses (no mirror is named in the project): its entries for its own
release (``bookworm``, ``bookworm-updates``, ``bookworm-security``) are
rewritten for the release asked for (``trixie``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from workqueue.machine.packages import SetupError

APT = Path("/etc/apt")
OS_RELEASE = Path("/etc/os-release")


@dataclass(frozen=True)
class Source:
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None

    def deb822(self) -> str:
        lines = [
            "Types: deb",
            f"URIs: {' '.join(self.uris)}",
            f"Suites: {' '.join(self.suites)}",
            f"Components: {' '.join(self.components)}",
        ]
        if self.signed_by:
            lines.append(f"Signed-By: {self.signed_by}")
        return "\n".join(lines) + "\n"


def codename(os_release: Path = OS_RELEASE) -> str:
    """This machine's release (VERSION_CODENAME), '' when it does not say."""
    try:
        text = os_release.read_text()
    except OSError:
        return ""
    found = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, flags=re.M)
    return found.group(1) if found else ""


def read(apt: Path = APT) -> list[Source]:
    """Every enabled binary-package source apt reads here, from both formats."""
    found: list[Source] = []
    one_line = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.is_file():
            found += _one_line(path.read_text(errors="replace"))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        found += _deb822(path.read_text(errors="replace"))
    return found


def for_release(release: str, apt: Path = APT, os_release: Path = OS_RELEASE) -> str:
    """The machine's Debian sources rewritten for ``release``, as deb822 text; SetupError when it has none."""
    own = codename(os_release)
    debian = [s for s in read(apt) if own and any(_of_release(suite, own) for suite in s.suites)]
    if not debian:
        release_words = f"for its release ({own})" if own else "(its /etc/os-release names no release)"
        raise SetupError(
            f"this machine's apt sources name no Debian mirror {release_words}: building a Debian {release} "
            f"image needs one, in {apt}/sources.list or {apt}/sources.list.d/ (either format)"
        )
    rewritten = [
        replace(s, suites=tuple(release + suite[len(own) :] for suite in s.suites if _of_release(suite, own)))
        for s in debian
    ]
    return "\n".join(s.deb822() for s in rewritten)


def _of_release(suite: str, release: str) -> bool:
    return suite == release or suite.startswith(f"{release}-")


def _one_line(text: str) -> list[Source]:
    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        options: dict[str, str] = {}
        if bracket := re.match(r"^deb\s+\[([^\]]*)\]\s+", line):
            options = dict(o.split("=", 1) for o in bracket.group(1).split() if "=" in o)
            line = "deb " + line[bracket.end() :]
        words = line.split()
        if len(words) >= 4 and words[0] == "deb":
            found.append(Source((words[1],), (words[2],), tuple(words[3:]), options.get("signed-by")))
    return found


def _deb822(text: str) -> list[Source]:
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        found.append(
            Source(
                tuple(fields.get("uris", "").split()),
                tuple(fields.get("suites", "").split()),
                tuple(fields.get("components", "").split()),
                fields.get("signed-by") or None,
            )
        )
    return found
