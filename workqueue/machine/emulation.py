"""Running another architecture's programs on this machine: Debian's qemu-user-static, through binfmt_misc.

Images for a Raspberry Pi (arm64) are built on a PC by running the Pi's own binaries (dpkg, apt,
python3) under emulation. The kernel hands such a binary to qemu when binfmt_misc has an entry for
its format; Debian's ``qemu-user-static`` ships the entries (``/usr/lib/binfmt.d``) with the ``F``
flag, so that the emulator works inside containers and chroots too. A machine with systemd registers
them when the package is installed; one without (a container, a CI sandbox) needs them written here.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from workqueue.machine.packages import SetupError, ensure_commands

# The architectures the images are built for, in Debian's and Docker's words, and in the kernel's
# (``uname -m``, what Ansible's facts say of a host): the one table of them.
KERNEL_NAMES = {"amd64": "x86_64", "arm64": "aarch64"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
ENTRIES = Path("/usr/lib/binfmt.d")


def native() -> str:
    """This machine's architecture, in Debian's and Docker's words."""
    machine = platform.machine()
    return next((arch for arch, kernel in KERNEL_NAMES.items() if kernel == machine), machine)


def check_architecture(arch: str) -> None:
    if arch not in KERNEL_NAMES:
        known = ", ".join(sorted(KERNEL_NAMES))
        raise SetupError(f"no images for architecture {arch!r}: the lab builds them for {known} (ARCH=arm64, say)")


def ensure_emulation(arch: str) -> None:
    """Make sure this machine runs ``arch``'s binaries: its own, or through qemu (installed and registered here)."""
    check_architecture(arch)
    if arch == native():
        return
    name = f"qemu-{KERNEL_NAMES[arch]}"
    # mmdebstrap checks a foreign architecture with arch-test before it starts.
    ensure_commands({f"{name}-static": "qemu-user-static", "arch-test": "arch-test"})
    if (BINFMT / name).exists():
        return
    if os.geteuid() != 0:
        raise SetupError(f"{arch} binaries cannot run here: as root, `systemctl restart systemd-binfmt` registers qemu")
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=False, capture_output=True)
    entry = ENTRIES / f"{name}.conf"
    try:
        (BINFMT / "register").write_text(entry.read_text().strip())
    except OSError as exc:
        raise SetupError(f"could not register {entry} with the kernel's binfmt_misc ({exc.strerror})") from None
    print(f"{arch} binaries now run here through {name}-static (binfmt_misc)", flush=True)
