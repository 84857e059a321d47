"""Which broker node leads a quorum queue, for the live views.

AMQP does not say where a queue's leader is; the management plugin's HTTP API
does (``rabbitmq_management``, on by default for a cluster of brokers). The
views ask the URL's nodes in turn with the programs' own user and password (the
role tags that user ``management`` when the plugin is on): HTTPS on 15671,
verified against the same CA, when the URL is ``amqps://``; HTTP on 15672
otherwise. A broker without the plugin, or that refuses the user, answers
nothing: the views then say nothing of a leader, and ask again only every 30 s.
A single broker is not asked.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

import pika

from workqueue.connection import Broker

MANAGEMENT_PORT = 15672
MANAGEMENT_TLS_PORT = 15671
ASK_TIMEOUT = 1.0  # per node: a view refreshes every second or two
ASK_AGAIN_AFTER = 30.0  # after no node answered


def led_by(leader: str) -> str:
    """How the report and both live views say it, after the queue's counts."""
    return f", led by {leader}" if leader else ""


class LeaderProbe:
    def __init__(self, broker: Broker, port: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.broker = broker
        self.port = port  # None: the plugin's own, by the URL's scheme
        self.clock = clock
        self._quiet_until = 0.0

    def leader(self, queue: str) -> str:
        """The node leading the queue now (rabbit@HOST); "" when no node says (or the queue is classic).
        One broker: "" without asking (it leads whatever it holds)."""
        if len(self.broker.nodes) < 2 or self.clock() < self._quiet_until:
            return ""
        for node in self.broker.nodes:
            answer = _ask(node, queue, self.port)
            if answer is not None:
                return answer
        self._quiet_until = self.clock() + ASK_AGAIN_AFTER
        return ""


def _ask(node: pika.URLParameters, queue: str, port: int | None) -> str | None:
    """The queue's leader as one node's HTTP API says it; None when that node does not answer."""
    tls = node.ssl_options
    scheme = "https" if tls else "http"
    port = port or (MANAGEMENT_TLS_PORT if tls else MANAGEMENT_PORT)
    vhost = urllib.parse.quote(str(node.virtual_host), safe="")
    url = f"{scheme}://{_host(str(node.host))}:{port}/api/queues/{vhost}/{urllib.parse.quote(queue, safe='')}"
    credentials = node.credentials
    login = f"{credentials.username}:{credentials.password}".encode()
    request = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(login).decode()})
    try:
        with urllib.request.urlopen(request, timeout=ASK_TIMEOUT, context=tls.context if tls else None) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return "" if exc.code == 404 else None  # 404: no such queue (yet); 401: the plugin refuses the user
    except (OSError, ValueError):
        return None
    return str(data.get("leader") or "") if isinstance(data, dict) else None


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
