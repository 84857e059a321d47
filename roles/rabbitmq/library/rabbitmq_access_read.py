#!/usr/bin/python
"""Which of the lab's accounts, permissions and policies the broker already holds as asked, in one read.

Each rabbitmqctl call starts an Erlang VM (about 0.5 s of CPU on a lab host). A re-run of site.yml had asked
five of them here: list_policies, list_users, authenticate_user for each account, list_permissions. One
`rabbitmqctl export_definitions` holds all of it, the passwords as salted hashes, which this module checks
against the passwords it is given without asking the broker. It answers with booleans only, in the order
of what it was given: no hash, password or name leaves it (a no_log password that equals a name, guest's,
would otherwise mask that name wherever it shows). The tasks that change things run only where an answer
is false.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: rabbitmq_access_read
short_description: Whether the broker holds the lab's accounts, their rights and its policies as asked
description:
  - Reads the broker's definitions once (C(rabbitmqctl export_definitions)) and answers, for each account,
    permission set and policy given, whether the broker already holds it as asked. Changes nothing.
  - A password is checked against the user's salted hash (RabbitMQ's SHA-256, SHA-512 and MD5 schemes); a
    user hashed otherwise is answered false, and the task that sets the password checks it again itself.
  - Where rabbitmqctl is not there yet (check mode on a fresh host), every answer is false.
options:
  vhost:
    description: The lab's vhost, whose permissions and policies are read.
    type: str
    required: true
  accounts:
    description: The accounts, each with C(user), C(tags), C(configure), C(write) and C(read).
    type: list
    elements: dict
    required: true
  passwords:
    description: Their passwords, in the same order.
    type: list
    elements: str
    required: true
    no_log: true
  policies:
    description: The policies, each with C(name), C(pattern), C(apply_to) and C(tags) (its definition).
    type: list
    elements: dict
    default: []
  node:
    description: The node rabbitmqctl talks to; default the local node.
    type: str
    default: ""
"""

RETURN = r"""
accounts_right:
  description: For each account, whether the user exists with that password and those tags.
  type: list
  elements: bool
permissions_right:
  description: For each account, whether its permissions on the vhost are those given (and no others).
  type: list
  elements: bool
policies_right:
  description: For each policy, whether the vhost has it with that pattern, target, priority 0 and definition.
  type: list
  elements: bool
guest_present:
  description: Whether the broker has a user named guest.
  type: bool
"""

# RabbitMQ's password hashes: base64 of a 4-byte salt, then the digest of salt + password.
HASHES = {
    "rabbit_password_hashing_sha256": hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
}


def password_matches(user: dict[str, Any], password: str) -> bool:
    digest = HASHES.get(str(user.get("hashing_algorithm", "rabbit_password_hashing_sha256")))
    try:
        hashed = base64.b64decode(str(user.get("password_hash", "")), validate=True)
    except ValueError:
        return False
    if digest is None or len(hashed) <= 4:
        return False
    return digest(hashed[:4] + password.encode()).digest() == hashed[4:]


def tags_of(user: dict[str, Any]) -> list[str]:
    """A user's tags: a list, or a comma-separated string (older exports)."""
    tags = user.get("tags") or []
    if isinstance(tags, str):
        tags = tags.replace(",", " ").split()
    return sorted({str(tag) for tag in tags})


def answers(definitions: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    vhost = params["vhost"]
    users = {str(u.get("name")): u for u in definitions.get("users") or []}
    held = {
        str(p.get("user")): {k: p.get(k) for k in ("configure", "write", "read")}
        for p in definitions.get("permissions") or []
        if p.get("vhost") == vhost
    }
    policies = {str(p.get("name")): p for p in definitions.get("policies") or [] if p.get("vhost") == vhost}
    accounts, passwords = params["accounts"], params["passwords"]
    return {
        "accounts_right": [
            account["user"] in users
            and password_matches(users[account["user"]], password)
            and tags_of(users[account["user"]]) == sorted(set(account.get("tags") or []))
            for account, password in zip(accounts, passwords, strict=True)
        ],
        "permissions_right": [
            held.get(account["user"]) == {k: account[k] for k in ("configure", "write", "read")} for account in accounts
        ],
        "policies_right": [
            (found := policies.get(policy["name"])) is not None
            and found.get("pattern") == policy["pattern"]
            and found.get("apply-to") == policy.get("apply_to", "queues")
            and found.get("priority", 0) == 0
            and found.get("definition") == policy["tags"]
            for policy in params["policies"]
        ],
        "guest_present": "guest" in users,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "vhost": {"type": "str", "required": True},
            "accounts": {"type": "list", "elements": "dict", "required": True},
            "passwords": {"type": "list", "elements": "str", "required": True, "no_log": True},
            "policies": {"type": "list", "elements": "dict", "default": []},
            "node": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    if len(module.params["passwords"]) != len(module.params["accounts"]):
        module.fail_json(msg="rabbitmq_access_read: give one password for each account, in the same order")
    rabbitmqctl = module.get_bin_path("rabbitmqctl", required=not module.check_mode)
    definitions: dict[str, Any] = {}
    if rabbitmqctl:
        node = ["-n", module.params["node"]] if module.params["node"] else []
        rc, out, err = module.run_command([rabbitmqctl, *node, "export_definitions", "-", "--format", "json"])
        if rc != 0 and not module.check_mode:
            module.fail_json(msg=f"rabbitmqctl export_definitions failed: {(err or out).strip()[-300:]}")
        start = out.find("{")  # past anything printed before the JSON
        if rc == 0 and start >= 0:
            definitions = json.loads(out[start:])
    module.exit_json(changed=False, **answers(definitions, module.params))


if __name__ == "__main__":
    main()
