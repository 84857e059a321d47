"""A partition's story, as the drill recorded it (roles/drill/tasks/partition.yml).

The drill cuts one node, or each, off from the cluster's other nodes and watches
what the node does: pause_minority pauses a node that sees no majority, and it
serves again once it sees the others. Its record gives, for each node cut off,
the seconds from the cut until it paused and from the heal until it served
again (``None``: it did not), and the node leading ``task_queue`` before and
after. Where each worker was connected is in the workers' own events.
"""

from __future__ import annotations

from dataclasses import dataclass

from workqueue.events import NAME_LIMIT, without_control


@dataclass(frozen=True)
class NodeCutOff:
    node: str
    paused_after: float | None  # seconds from the cut; None: it did not pause while cut off
    served_again_after: float | None  # seconds from the heal; None: not within the drill's wait
    restarted: bool = False  # it hung while booting again, and the drill restarted it


@dataclass(frozen=True)
class Partition:
    nodes: tuple[NodeCutOff, ...]
    leader_before: str
    leader_after: str


def read_partition(value: object) -> Partition | None:
    """The record's ``partition``; None when it holds none that can be read."""
    if not isinstance(value, dict) or not isinstance(value.get("nodes"), list):
        return None
    nodes = tuple(
        NodeCutOff(
            _name(n.get("node")),
            _seconds(n.get("paused_after")),
            _seconds(n.get("served_again_after")),
            n.get("restarted") is True,
        )
        for n in value["nodes"]
        if isinstance(n, dict) and _name(n.get("node"))
    )
    if not nodes:
        return None
    return Partition(nodes, _name(value.get("leader_before")), _name(value.get("leader_after")))


def story(partition: Partition) -> str:
    """``rabbit@lab1 paused 52 s after the cut and served again 4 s after the heal; task_queue led by ...``."""
    parts = [_node_story(n) for n in partition.nodes]
    before, after = partition.leader_before or "?", partition.leader_after or "?"
    led = f"by {before} before, by {after} after" if before != after else f"by {before} before and after"
    parts.append(f"task_queue led {led}")
    return "; ".join(parts)


def _node_story(node: NodeCutOff) -> str:
    paused = (
        f"paused {node.paused_after:.0f} s after the cut (pause_minority)"
        if node.paused_after is not None
        else "did not pause"
    )
    if node.served_again_after is None:
        again = "did not serve again after the heal"
    elif node.paused_after is None and not node.restarted:
        again = "served throughout"
    else:
        again = f"served again {node.served_again_after:.0f} s after the heal"
    if node.restarted:
        again += " (it hung while booting again, a known fault of RabbitMQ 3.10 on Erlang 25: the drill restarted it)"
    return f"{node.node} {paused} and {again}"


def _name(value: object) -> str:
    return without_control(value)[:NAME_LIMIT] if isinstance(value, str) else ""


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 <= number <= 3600 else None
