"""Where the lab's broker is and how to log in, found from an inventory the way the playbooks find it.

The playbooks derive the broker's URL and password file in playbooks/group_vars/all/lab.yml;
this asks Ansible to evaluate that same file against the inventory, so the
rule stays in one place. The password itself is never asked for: only the
name of the file that holds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = Path(sys.executable).parent / "ansible"
INVENTORIES = (ROOT / "inventory" / "lab.yml", ROOT / "inventory" / "virtual" / "hosts.yml")
WANTED = (
    "{{ {'url': amqp_url, 'password_file': credentials_file | realpath, 'mode': task_mode,"
    " 'guest': rabbitmq_guest_remote_access | bool, 'own_password': lab_password | length > 0,"
    " 'ca_file': tls_ca_file | realpath if rabbitmq_tls | bool else none} | to_json }}"
)


class SettingsError(Exception):
    """The inventory does not say where the broker is; the message says what to fix."""


@dataclass(frozen=True)
class LabSettings:
    url: str  # without the password
    password_file: str | None  # None: guest, whose password is in the URL
    mode: str
    ca_file: str | None = None  # the lab's CA, when the broker speaks TLS (rabbitmq_tls)


def default_inventory() -> Path:
    """Your lab's inventory, else the virtual lab's."""
    return next((path for path in INVENTORIES if path.exists()), INVENTORIES[0])


def from_inventory(inventory: Path) -> LabSettings:
    if not inventory.exists():
        raise SettingsError(f"no inventory at {inventory}: copy inventory/lab.example.yml or run make lab-up")
    playbooks = ROOT / "playbooks"
    command = [str(ANSIBLE), "localhost", "-i", str(inventory), "--playbook-dir", str(playbooks)]
    command += ["-m", "ansible.builtin.debug", "-a", f"msg={WANTED}"]  # --playbook-dir: its group_vars too
    env = {**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False)
    try:
        answer = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        found = json.loads(answer["msg"]) if isinstance(answer["msg"], str) else answer["msg"]
    except (ValueError, KeyError, IndexError, TypeError):
        reason = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        raise SettingsError(f"the inventory {inventory} does not name the broker ({reason})") from None
    ca_file = found.get("ca_file")
    if ca_file and not Path(ca_file).exists():
        raise SettingsError(f"no CA certificate at {ca_file}: deploy the lab first (playbooks/site.yml)")
    if found["guest"]:
        url = found["url"].replace("://guest@", "://guest:guest@", 1)
        return LabSettings(url, None, found["mode"], ca_file)
    if found["own_password"]:
        password_file = os.environ.get("AMQP_PASSWORD_FILE")
        if not password_file:
            raise SettingsError("lab_password is set in the inventory: put it in a file and set AMQP_PASSWORD_FILE")
        return LabSettings(found["url"], password_file, found["mode"], ca_file)
    if not Path(found["password_file"]).exists():
        raise SettingsError(f"no password at {found['password_file']}: deploy the lab first (playbooks/site.yml)")
    return LabSettings(found["url"], found["password_file"], found["mode"], ca_file)
