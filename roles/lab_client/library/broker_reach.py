#!/usr/bin/python
"""Whether this host reaches the broker's port at the address the programs will use, and if not, why.

The failure a teacher meets most is "the workers start but never receive
anything": the broker's name does not resolve on a worker host (or resolves to
a stale address), a firewall drops the port, or RabbitMQ does not listen on
that interface. Each of those shows differently to a TCP connection from the
host itself, which is what this module tries; it changes nothing.
"""

from __future__ import annotations

import ipaddress
import socket

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: broker_reach
short_description: Connect to the broker's port from this host; fail naming the host, the address and the likely cause
description:
  - Resolves the address as the programs will, connects to the port (TCP only, no AMQP), and fails with one line
    that names this host, the address and what the failure points to. Changes nothing; runs in check mode.
options:
  address:
    description: The broker's address, as the programs' URL names it (a name or an IP address).
    type: str
    required: true
  port:
    description: The broker's port.
    type: int
    required: true
  timeout:
    description: Seconds to wait for the connection.
    type: float
    default: 5
  expected:
    description: The broker host's address as the inventory knows it; a name that resolves elsewhere is named.
    type: str
    default: ""
  host:
    description: This host's name, for the message.
    type: str
    required: true
"""


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "port": {"type": "int", "required": True},
            "timeout": {"type": "float", "default": 5.0},
            "expected": {"type": "str", "default": ""},
            "host": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    address, port, timeout = module.params["address"], module.params["port"], module.params["timeout"]
    expected, host = module.params["expected"], module.params["host"]
    where = f"{host} cannot reach the broker at {address}:{port}"
    try:
        found = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):  # UnicodeError: no name at all (an empty label, a label too long)
        module.fail_json(
            msg=f"{where}: the name {address} does not resolve on {host}; "
            f"add it to DNS or to /etc/hosts there, or give the broker's address in the inventory"
        )
    resolved = list(dict.fromkeys(str(info[4][0]) for info in found))
    stale = ""
    if not _is_address(address) and _is_address(expected) and expected not in resolved:
        stale = (
            f"{address} resolves to {', '.join(resolved)} on {host}, but the broker host is at {expected} "
            f"(a stale line in {host}'s /etc/hosts, or in DNS?)"
        )
    causes = []
    for family, kind, proto, _, sockaddr in found:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.settimeout(timeout)
                probe.connect(sockaddr)
        except ConnectionRefusedError:
            causes.append(
                f"{sockaddr[0]} refused the connection: nothing listens on port {port} there "
                "(RabbitMQ not running, or not listening on that interface)"
            )
        except TimeoutError:
            causes.append(
                f"no answer from {sockaddr[0]} within {timeout:g} s: a firewall on the broker host or on the way "
                f"drops port {port} (open it to {host})"
            )
        except OSError as exc:
            causes.append(f"{sockaddr[0]}: {exc.strerror or exc} (a firewall that rejects it, or no route)")
        else:
            if stale:
                break  # it answers, but not where the inventory says: still the wrong broker, perhaps
            module.exit_json(changed=False, resolved=resolved, answered=str(sockaddr[0]))
    module.fail_json(msg=f"{where}: {'; '.join(([stale] if stale else []) + list(dict.fromkeys(causes)))}")


if __name__ == "__main__":
    main()
