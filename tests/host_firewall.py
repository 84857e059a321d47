"""A lab PC's host firewall, put on a virtual lab host before site.yml, and what it lets through."""

from __future__ import annotations

import docker

from workqueue.virtual_lab.lab_runs import on, on_result

# SSH and what the host started itself, nothing else. (Not "flush ruleset": in a
# container, that would also flush the rules that lead to Docker's DNS.)
DROP_BY_DEFAULT = """table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
    tcp dport 22 accept
  }
}
"""


def install_drop_by_default(client: docker.DockerClient, host: str) -> None:
    """An input chain that drops what no rule accepts (nftables is installed, as on every Debian installation)."""
    on(client, host, "sh", "-c", f"printf '%s' '{DROP_BY_DEFAULT}' > /etc/nftables.conf && nft -f /etc/nftables.conf")


def lab_rules(client: docker.DockerClient, host: str) -> list[str]:
    """The rules the rabbitmq role added (their comment says workqueue-lab)."""
    return [line.strip() for line in on(client, host, "nft", "list", "ruleset").splitlines() if "workqueue-lab" in line]


def connects(client: docker.DockerClient, from_host: str, address: str, port: int) -> bool:
    """Whether a TCP connection from a lab host to the address and port is answered within 3 s."""
    probe = f"import socket; socket.create_connection(('{address}', {port}), timeout=3)"
    return on_result(client, from_host, "python3", "-c", probe)[0] == 0


# The guard's table (roles/host_firewall) for the broker's ports.
GUARD_TABLE = "workqueue_lab_rabbitmq"


def outsider_reaches(client: docker.DockerClient, network: str, address: str, ports: list[int]) -> dict[int, bool]:
    """Which ports of the address answer a machine on the lab's network that the inventory does not name
    (a container of its own there), each within 3 s."""
    probe = (
        "import socket, sys\n"
        "for port in map(int, sys.argv[2:]):\n"
        "    try:\n"
        "        socket.create_connection((sys.argv[1], port), timeout=3).close()\n"
        "        print(port, 'open')\n"
        "    except OSError as error:\n"
        "        print(port, type(error).__name__)\n"
    )
    said = client.containers.run(
        "workqueue-lab/python:latest",
        ["python3", "-c", probe, address, *map(str, ports)],
        network=network,
        remove=True,
    ).decode()
    answers = dict(line.split() for line in said.splitlines())
    return {port: answers[str(port)] == "open" for port in ports}
