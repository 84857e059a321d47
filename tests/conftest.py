"""Fixtures: a real RabbitMQ on loopback, clean queues, and programs run as processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from virtual_lab import local_broker
from virtual_lab.processes import LocalLab

URL = local_broker.LOCAL_URL
QUEUES = ("hello", "task_queue", "task_queue.rejected")


@pytest.fixture(scope="session")
def broker() -> str:
    local_broker.ensure_broker()
    return URL


def delete_queues() -> None:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    for name in QUEUES:
        channel.queue_delete(name)
    connection.close()


@pytest.fixture
def clean_broker(broker: str) -> Iterator[str]:
    """The broker with none of the project's queues, before and after the test."""
    delete_queues()
    yield broker
    delete_queues()


@pytest.fixture
def lab(clean_broker: str, tmp_path: Path) -> Iterator[LocalLab]:
    lab = LocalLab(tmp_path)
    yield lab
    lab.stop_all()


def consumer_count(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()
