"""report.leader's rules, against a local HTTP endpoint standing in for the management API; how the views say it.

That the live view names a real cluster's leader, before and after it is killed,
is tests/test_cluster.py's; here: which node is asked, what counts as no answer,
and that a broker without the plugin is not asked at every refresh.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from workqueue.connection import broker_from_url
from workqueue.queues import Mode, queue_spec
from workqueue.report import feed, watch
from workqueue.report.gathered import QueueState
from workqueue.report.leader import ASK_AGAIN_AFTER, LeaderProbe, led_by
from workqueue.report.live import LiveState
from workqueue.report.web.frame import _queue

LOGIN = "Basic " + base64.b64encode(b"workqueue:s3cret").decode()


class Management(BaseHTTPRequestHandler):
    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Management.asked.append(self.path)
        if self.headers.get("Authorization") != LOGIN:
            self.send_response(401)
        elif self.path == "/api/queues/work%2Fqueue/task_queue":
            body = json.dumps({"name": "task_queue", "type": "quorum", "leader": "rabbit@lab2"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def management() -> Iterator[int]:
    Management.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Management)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_first_node_that_answers_names_the_leader(management: int) -> None:
    # 127.0.0.2 refuses (nothing listens there): the probe goes on to the next node.
    broker = broker_from_url("amqp://workqueue:s3cret@127.0.0.2:5672,127.0.0.1:5672/work%2Fqueue")
    probe = LeaderProbe(broker, port=management)
    assert probe.leader("task_queue") == "rabbit@lab2"
    assert probe.leader("no_such_queue") == ""  # the node answered: no such queue yet
    assert probe.leader("task_queue") == "rabbit@lab2"  # and it is asked again at once
    asked = ["/api/queues/work%2Fqueue/task_queue", "/api/queues/work%2Fqueue/no_such_queue"]
    assert Management.asked == [*asked, asked[0]]
    assert led_by("rabbit@lab2") == ", led by rabbit@lab2" and led_by("") == ""
    # One broker leads whatever it holds: not asked.
    alone = LeaderProbe(broker_from_url("amqp://workqueue:s3cret@127.0.0.1/work%2Fqueue"), port=management)
    assert alone.leader("task_queue") == "" and len(Management.asked) == 3


def test_a_broker_without_the_plugin_is_asked_again_only_after_a_while(management: int) -> None:
    now = [1000.0]
    url = "amqp://workqueue:s3cret@127.0.0.1,127.0.0.2/work%2Fqueue"
    refused = LeaderProbe(broker_from_url(url), closed_port(), lambda: now[0])
    assert refused.leader("task_queue") == ""
    # A user the plugin refuses (401: not tagged management) is no answer either.
    wrong = LeaderProbe(broker_from_url(url.replace("s3cret", "wrong")), management, lambda: now[0])
    assert wrong.leader("task_queue") == "" and len(Management.asked) == 1
    wrong.broker = broker_from_url(url)  # the user is tagged now
    now[0] += ASK_AGAIN_AFTER - 1
    assert wrong.leader("task_queue") == "" and len(Management.asked) == 1  # not asked: quiet for a while
    now[0] += 2
    assert wrong.leader("task_queue") == "rabbit@lab2" and len(Management.asked) == 2


def test_both_live_views_say_the_leader_after_the_queues_counts() -> None:
    queue = _queue("task_queue", QueueState("task_queue", 1, 0, 2, "rabbit@lab2"), Mode.ACK, 0)
    assert queue["leader"] == "rabbit@lab2" and queue["line"].endswith("2 consumers, led by rabbit@lab2")
    options = watch.parse_args(["--url", "amqp://guest:guest@127.0.0.1/", "--mode", "ack"]).broker
    frame = watch.render(LiveState(), feed.QueueCount(1, 2), queue_spec(Mode.ACK), Mode.ACK, options, 0, "rabbit@lab2")
    assert "1 ready (broker), 0 unacknowledged (held by workers), 2 consumers, led by rabbit@lab2" in frame
