"""The soak's faults: which strikes when, drawn from a seed, so that a run can be replayed.

Each fault is one of ``playbooks/drill.yml``'s, on a target of its kind, lasting ``duration``
seconds where it lasts; the next strikes only after a quiet gap, once this one is healed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# The faults a soak draws from: a worker's, a single broker's, a cluster's node's.
WORKER_FAULTS = ("stop", "kill", "freeze", "cut", "lossy")
BROKER_FAULTS = ("broker-restart", "broker-disk")
CLUSTER_FAULTS = ("broker-node-kill", "broker-node-stop", "partition", "broker-disk")
# Seconds of quiet between one fault's heal and the next fault, and how long a lasting fault lasts.
GAP = (20.0, 60.0)
DURATION = (10.0, 30.0)
# A partition lasts past the cluster's net_ticktime (the soak sets 15 s), or no node notices it.
PARTITION_DURATION = (40.0, 60.0)
LASTING = ("freeze", "cut", "lossy", "partition", "broker-disk", "broker-node-stop")
# No fault is drawn to start in the run's last minute: the last ones strike while tasks still come.
QUIET_END_SECONDS = 60.0
# On a busy machine the faults run late (the schedule counts their durations, not the playbooks around
# them); one that would strike in the run's last 20 s, or once the producer is done, is not struck: a
# worker's fault waits for a task in hand, and none may come.
LATE_SECONDS = 20.0


@dataclass(frozen=True)
class Strike:
    after: float  # seconds from the start of the soak at the earliest (the last fault healed first)
    fault: str
    target: str
    duration: int | None  # seconds, for a lasting fault

    def drill_args(self) -> list[str]:
        """drill.yml's extra variables for this strike."""
        args = ["-e", f"fault={self.fault}"]
        if self.target:
            args += ["-e", f"target={self.target}"]
        if self.duration is not None:
            args += ["-e", f"duration={self.duration}"]
        return args


def faults_for(brokers: int) -> tuple[str, ...]:
    return WORKER_FAULTS + (CLUSTER_FAULTS if brokers > 1 else BROKER_FAULTS)


def heals_by_itself(fault: str) -> bool:
    """A stop or a kill leaves the worker down until site.yml starts it, as in the lesson."""
    return fault not in ("stop", "kill")


def last_start(minutes: float) -> float:
    """Seconds into a soak of ``minutes`` after which no fault starts: its last minute."""
    return minutes * 60 - QUIET_END_SECONDS


def too_late(minutes: float) -> float:
    """Seconds into a soak of ``minutes`` after which a fault that runs late is not struck."""
    return minutes * 60 - LATE_SECONDS


def draw(seed: int, minutes: float, worker_hosts: list[str], brokers: int) -> list[Strike]:
    """The strikes of a soak of ``minutes``: the same for the same seed, lab and length."""
    rng = random.Random(seed)
    end = last_start(minutes)
    strikes: list[Strike] = []
    at = rng.uniform(*GAP)
    while at < end:
        fault = rng.choice(faults_for(brokers))
        # A worker's fault on one of the worker hosts; a node's on the node leading task_queue
        # (drill.yml finds it: no target); the broker's on every node.
        target = rng.choice(worker_hosts) if fault in WORKER_FAULTS else ""
        span = PARTITION_DURATION if fault == "partition" else DURATION
        duration = round(rng.uniform(*span)) if fault in LASTING else None
        strikes.append(Strike(round(at, 1), fault, target, duration))
        at += (duration or 0) + rng.uniform(*GAP)
    return strikes
