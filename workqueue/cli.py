"""Options both programs take, from flags or from the environment, and how they fail.

A flag wins over its environment variable, which wins over the default. A bad
value from either is a usage error (exit 2) that names the flag or variable.
Failures talking to the broker are one line on standard error (exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from workqueue.connection import DEFAULT_URL, Broker, BrokerError, broker_from_url
from workqueue.queues import Mode, QueueSpec, queue_spec

T = TypeVar("T")

EXIT_FAILURE = 1


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{text!r} is not a positive whole number")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{text!r} is not a number of seconds, 0 or more")
    return value


def mode(text: str) -> Mode:
    try:
        return Mode(text)
    except ValueError:
        raise ValueError(f"unknown mode {text!r}: use ack or noack") from None


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    """The options that say which broker and which of the tutorial's modes."""
    default_url = DEFAULT_URL.replace("%", "%%")  # argparse formats help with %
    parser.add_argument("--url", help=f"broker URL (env AMQP_URL; default {default_url})")
    parser.add_argument(
        "--password-file",
        help="read the password from this file, not the URL (env AMQP_PASSWORD_FILE)",
    )
    parser.add_argument(
        "--ca-file",
        help="with an amqps:// URL, trust the broker's certificate when this CA signed it (env AMQP_CA_FILE)",
    )
    parser.add_argument("--mode", help="ack (default: durable queue, acknowledgements) or noack (env TASK_MODE)")
    parser.add_argument(
        "--queue-type",
        help="ack mode's queue type, named in the declaration: classic or quorum "
        "(env QUEUE_TYPE; default: none named, the vhost's default type, as the seed's tutorial declares it)",
    )
    parser.add_argument(
        "--connect-timeout",
        help="seconds to keep retrying while the broker does not answer (env CONNECT_TIMEOUT; default 60)",
    )


@dataclass(frozen=True)
class BrokerOptions:
    broker: Broker
    mode: Mode
    queue: QueueSpec
    connect_timeout: float


def resolve_broker_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> BrokerOptions:
    chosen_mode = option(parser, args.mode, "--mode", "TASK_MODE", mode, Mode.ACK)
    queue_type = option(parser, args.queue_type, "--queue-type", "QUEUE_TYPE", str, "")
    try:
        spec = queue_spec(chosen_mode, queue_type)
    except ValueError as exc:
        parser.error(str(exc))
    url = option(parser, args.url, "--url", "AMQP_URL", str, DEFAULT_URL)
    password_file = option(parser, args.password_file, "--password-file", "AMQP_PASSWORD_FILE", str, None)
    ca_file = option(parser, args.ca_file, "--ca-file", "AMQP_CA_FILE", str, None)
    try:
        broker = broker_from_url(url, password_file, ca_file)
    except ValueError as exc:
        parser.error(str(exc))
    timeout = option(parser, args.connect_timeout, "--connect-timeout", "CONNECT_TIMEOUT", non_negative_float, 60.0)
    return BrokerOptions(broker=broker, mode=chosen_mode, queue=spec, connect_timeout=timeout)


def option(
    parser: argparse.ArgumentParser,
    flag_value: str | None,
    flag: str,
    env_name: str,
    convert: Callable[[str], T],
    default: T,
) -> T:
    """The flag's value, else the environment's, else the default; checked by ``convert``."""
    if flag_value is not None:
        source, text = flag, flag_value
    elif os.environ.get(env_name, "") != "":
        source, text = env_name, os.environ[env_name]
    else:
        return default
    try:
        return convert(text)
    except ValueError as exc:
        parser.error(f"{source}: {exc}")


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_FAILURE)


def run(prog: str, main: Callable[[], int]) -> NoReturn:
    """Run a program's main: broker failures become one line and exit 1, never a traceback."""
    try:
        code = main()
    except BrokerError as exc:
        fail(prog, str(exc))
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)
