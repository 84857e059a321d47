"""Installing Debian/Ubuntu packages this machine lacks, or saying which to install."""

from __future__ import annotations

import os
import shutil
import subprocess


class SetupError(Exception):
    """Something this machine lacks and that could not be set up; says what to do."""


_apt_updated = False


def ensure_commands(commands: dict[str, str]) -> None:
    """Make sure each command exists, installing its package (command -> package) when root."""
    missing = sorted({package for command, package in commands.items() if shutil.which(command) is None})
    if not missing:
        return
    hint = f"install them with: sudo apt-get install {' '.join(missing)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SetupError(f"missing packages {', '.join(missing)}: {hint}")
    global _apt_updated
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {', '.join(missing)} from the distribution's packages...", flush=True)
    try:
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
            _apt_updated = True
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    except subprocess.CalledProcessError as exc:
        raise SetupError(f"apt-get failed (exit {exc.returncode}) installing {', '.join(missing)}; {hint}") from None
