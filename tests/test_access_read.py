"""The rabbitmq role's one read of the broker (library/rabbitmq_access_read.py), on the tests' real broker.

site.yml changes an account, its rights or a policy only where this read says the broker does not hold it
as asked: a wrong "right" leaves a lab with an old password, a wrong "not right" makes a re-run change
things. Each answer is checked both ways here, and that the answer carries no password and no hash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NODE, VHOST, account

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE = Path(sys.executable).parent / "ansible"
USER, PASSWORD = "access-read-user", "Access-read-pw-1"
RIGHTS = {"configure": "^ar-.*", "write": ".*", "read": ".*"}
POLICY: dict[str, Any] = {
    "name": "access-read-policy",
    "pattern": "^ar-only$",
    "apply_to": "queues",
    "tags": {"delivery-limit": 7},
}


def read(accounts: list[dict[str, Any]], passwords: list[str], policies: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the module on this machine against the tests' node, as site.yml runs it on the broker host."""
    args = {"vhost": VHOST, "accounts": accounts, "passwords": passwords, "policies": policies, "node": NODE.name}
    command = [str(ANSIBLE), "localhost", "-c", "local", "-M", str(ROOT / "roles" / "rabbitmq" / "library")]
    command += ["-m", "rabbitmq_access_read", "-a", json.dumps(args)]
    env = {**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "true", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env, cwd=ROOT)
    assert PASSWORD not in done.stdout + done.stderr
    return dict(json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"])


def the_account(**changes: Any) -> dict[str, Any]:
    return {"user": USER, "tags": [], **RIGHTS, **changes}


@pytest.fixture
def held(broker: str) -> Iterator[None]:
    """The account with its rights and the policy, on the tests' vhost; removed after."""
    ctl = ["rabbitmqctl", "-n", NODE.name]
    policy = [*ctl, "set_policy", "-p", VHOST, "--apply-to", "queues", POLICY["name"], POLICY["pattern"]]
    with account(USER, PASSWORD, (RIGHTS["configure"], RIGHTS["write"], RIGHTS["read"])):
        subprocess.run([*policy, json.dumps(POLICY["tags"])], check=True, capture_output=True)
        try:
            yield
        finally:
            subprocess.run([*ctl, "clear_policy", "-p", VHOST, POLICY["name"]], check=False, capture_output=True)


def test_what_the_broker_holds_as_asked_is_right_and_each_difference_is_not(held: None) -> None:
    other_policy = {**POLICY, "tags": {"delivery-limit": 8}}
    answer = read(
        [the_account(), the_account(), the_account(tags=["management"]), the_account(read="^ar-.*")],
        [PASSWORD, PASSWORD + "x", PASSWORD, PASSWORD],
        [POLICY, other_policy, {**POLICY, "pattern": "^other$"}, {**POLICY, "name": "no-such-policy"}],
    )
    assert answer.get("failed") is not True, answer
    assert answer["accounts_right"] == [True, False, False, True]  # the password, then the tags, differ
    assert answer["permissions_right"] == [True, True, True, False]
    assert answer["policies_right"] == [True, False, False, False]
    assert answer["changed"] is False
    assert "password_hash" not in json.dumps(answer)


def test_a_user_the_broker_lacks_is_not_right(broker: str) -> None:
    answer = read([the_account(user="access-read-nobody")], [PASSWORD], [])
    assert answer["accounts_right"] == [False] and answer["permissions_right"] == [False]


def test_one_password_per_account_or_a_one_line_error(broker: str) -> None:
    answer = read([the_account()], [], [])
    assert answer.get("failed") is True
    assert answer["msg"] == "rabbitmq_access_read: give one password for each account, in the same order"
