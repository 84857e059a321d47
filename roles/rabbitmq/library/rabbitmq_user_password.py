#!/usr/bin/python
"""A RabbitMQ user with a password, set without the password ever reaching a command line.

community.rabbitmq.rabbitmq_user passes the password to rabbitmqctl as an
argument, on every run (update_password: always checks it with
authenticate_user): Debian's rabbitmqctl re-runs itself through su, whose
command line every user of the host sees in ps and the journal keeps. rabbitmqctl
reads the password from standard input when the command line omits it, which is
what this module does, for the three commands that take one. It sets the user's
tags too, from the same list_users answer. The role runs it only where
rabbitmq_access_read found the account missing or different, so a re-run does
not start it at all. Without --quiet:
RabbitMQ 4.0's rabbitmqctl waits forever for a password on standard input when
it is given --quiet (3.10's did not).
"""

from __future__ import annotations

import json

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: rabbitmq_user_password
short_description: A RabbitMQ user and its password, the password passed on standard input only
description:
  - Reads the users with C(rabbitmqctl list_users), checks the password with
    C(authenticate_user), and makes the user (C(add_user)) or changes its password (C(change_password)) only
    where they differ, and its tags (C(set_user_tags)). The password goes to rabbitmqctl on standard input,
    never as an argument. Permissions are left to community.rabbitmq.rabbitmq_user.
options:
  user:
    description: The user's name.
    type: str
    required: true
  password:
    description: Its password.
    type: str
    required: true
    no_log: true
  tags:
    description: The user's tags (for example management, which lets it read its vhost through the HTTP API).
    type: list
    elements: str
    default: []
  node:
    description: The node rabbitmqctl talks to; default the local node.
    type: str
    default: ""
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "user": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "tags": {"type": "list", "elements": "str", "default": []},
            "node": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    user, password, node = module.params["user"], module.params["password"], module.params["node"]
    rabbitmqctl = [module.get_bin_path("rabbitmqctl", required=True), *(["-n", node] if node else [])]

    def ctl(*args: str, secret: bool = False) -> tuple[int, str, str]:
        # binary_data: no newline added; rabbitmqctl takes the line as the password.
        return module.run_command([*rabbitmqctl, *args], data=password if secret else None, binary_data=True)

    rc, out, err = ctl("list_users", "--quiet", "--formatter", "json")
    if rc != 0:
        module.fail_json(msg=f"rabbitmqctl list_users failed: {(err or out).strip()}")
    entry = next((e for e in json.loads(out or "[]") if e.get("user") == user), None)
    exists = entry is not None
    password_ok = exists and ctl("authenticate_user", user, secret=True)[0] == 0
    tags = sorted(set(module.params["tags"]))
    tags_ok = exists and sorted(set(_tags(entry))) == tags
    if not module.check_mode:
        if not password_ok:
            rc, out, err = ctl("change_password" if exists else "add_user", user, secret=True)
            if rc != 0:
                module.fail_json(msg=f"rabbitmqctl could not set the password of {user}: {(err or out).strip()}")
        if not tags_ok:
            rc, out, err = ctl("set_user_tags", user, *tags)
            if rc != 0:
                module.fail_json(msg=f"rabbitmqctl could not set the tags of {user}: {(err or out).strip()}")
    changed = not (password_ok and tags_ok)
    module.exit_json(changed=changed, user=user, password_changed=exists and not password_ok, tags=tags)


def _tags(entry: dict | None) -> list[str]:
    """list_users' tags: a list (what RabbitMQ 3.10.8's JSON formatter gives); a string like "[management]" is
    read too, as the table formatter and community.rabbitmq's own parser have it."""
    tags = (entry or {}).get("tags") or []
    if isinstance(tags, str):
        tags = tags.strip("[]").replace(",", " ").split()
    return [str(tag) for tag in tags]


if __name__ == "__main__":
    main()
