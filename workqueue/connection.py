"""The broker's address and credentials, and connecting to it with bounded retries.

Every message that names the broker goes through ``Broker.where``, which never
includes the password.
"""

from __future__ import annotations

import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions
import pika.frame
from pika.adapters.utils.connection_workflow import AMQPConnectorException, AMQPConnectorStackTimeout

from workqueue.tasks import as_text

# What opening a connection raises when the broker does not answer as it should: pika's connection
# errors; its connector's, which are not among them (the AMQP handshake timed out: a lossy link, a
# broker too busy to answer); an OSError (a name that does not resolve).
UNREACHABLE = (pika.exceptions.AMQPConnectionError, AMQPConnectorException, OSError)

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"
# A dead peer is noticed after about two missed heartbeats; 30 s keeps that under
# a minute while costing nothing on an idle lab.
HEARTBEAT_SECONDS = 30
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 5.0


class BrokerError(Exception):
    """A failure to reach or use the broker, said in one line without the password."""


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to log in, ready for pika: one node, or the
    nodes of a cluster, tried in their order at every connection."""

    nodes: tuple[pika.URLParameters, ...]

    @property
    def parameters(self) -> pika.URLParameters:
        """The first node's: the user, the vhost and the settings are the same on every node."""
        return self.nodes[0]

    @property
    def user(self) -> str:
        return str(self.parameters.credentials.username)

    @property
    def where(self) -> str:
        hosts = ", ".join(f"{node.host}:{node.port}" for node in self.nodes)
        return f"user '{self.user}' at {hosts}, vhost '{self.parameters.virtual_host}'"


def broker_from_url(url: str, password_file: str | None = None, ca_file: str | None = None) -> Broker:
    """Check an AMQP URL and build the broker's parameters.

    Raises ValueError with a message that says what to fix (a usage error).
    The password comes from ``password_file`` when one is given, so that it
    need not appear in the URL, a command line or the container's environment.
    An ``amqps://`` URL verifies the broker's certificate and name against
    ``ca_file`` (the lab's CA), or against the system's CAs when none is given.
    A cluster's nodes are listed in the URL's host part, separated by commas
    (``amqp://user@node1:5672,node2:5672,node3:5672/vhost``, as libpq takes
    several hosts): a client tries them in that order and takes the first that answers.
    """
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = [
        _node_from_url(urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}")), password_file, ca_file)
        for host in hosts.split(",")
    ]
    return Broker(tuple(nodes))


def _node_from_url(url: str, password_file: str | None, ca_file: str | None) -> pika.URLParameters:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"broker URL must start with amqp:// or amqps://, got {_without_password(url)!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL has a bad port: {_without_password(url)!r}") from None
    if not parts.hostname:
        raise ValueError(f"broker URL names no host: {_without_password(url)!r}")
    if port == 0:
        raise ValueError(f"broker URL has a bad port: {_without_password(url)!r}")
    if parts.username and parts.password is None:
        if not password_file:
            raise ValueError(
                f"broker URL names user '{parts.username}' but no password: "
                "add it to the URL or give a password file (AMQP_PASSWORD_FILE)"
            )
        # pika needs some password in the URL; the file's replaces it below.
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.replace("@", ":-@", 1)))
    try:
        parameters = pika.URLParameters(url)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"broker URL is malformed ({exc}): {_without_password(url)!r}") from None
    if password_file:
        parameters.credentials = pika.PlainCredentials(parameters.credentials.username, _read_password(password_file))
    if "heartbeat" not in urllib.parse.parse_qs(parts.query):
        parameters.heartbeat = HEARTBEAT_SECONDS
    if ca_file and parts.scheme != "amqps":
        raise ValueError(f"a CA file ({ca_file}) is for TLS: the broker URL must start with amqps://")
    if parts.scheme == "amqps":
        parameters.ssl_options = pika.SSLOptions(_verifying_context(ca_file), server_hostname=parts.hostname)
    return parameters


def _verifying_context(ca_file: str | None) -> ssl.SSLContext:
    """TLS that checks the broker's certificate chain and its name (or address)."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = "not a PEM certificate" if isinstance(exc, ssl.SSLError) else exc.strerror
        raise ValueError(f"cannot read the CA file {ca_file}: {reason}") from None


def _read_password(path: str) -> str:
    try:
        password = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read the password file {path}: {reason}") from None
    if not password:
        raise ValueError(f"the password file {path} is empty")
    return password


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def connect(
    broker: Broker,
    timeout: float,
    should_stop: Callable[[], bool] = lambda: False,
    on_retry: Callable[[str, float], None] = lambda reason, delay: None,
) -> pika.BlockingConnection | None:
    """Connect, retrying with backoff while the broker does not answer.

    A refused login or vhost is final at once: retrying cannot mend it. Returns
    None when ``should_stop`` turns true while waiting (a signal arrived).
    """
    deadline = time.monotonic() + timeout
    delay = RETRY_FIRST_DELAY
    while True:
        try:
            return pika.BlockingConnection(list(broker.nodes))
        except pika.exceptions.ProbableAuthenticationError:
            raise BrokerError(f"access refused for {broker.where}: check the user name and password") from None
        except pika.exceptions.ProbableAccessDeniedError:
            raise BrokerError(
                f"vhost refused for {broker.where}: check that the vhost exists and that the user has permissions on it"
            ) from None
        except UNREACHABLE as exc:
            if isinstance(_cause(exc), ssl.SSLCertVerificationError):
                raise BrokerError(
                    f"the broker's certificate is not trusted for {broker.where} ({describe(exc)}): "
                    "give the lab's CA (--ca-file or AMQP_CA_FILE)"
                ) from None
            reason = describe(exc)
            if time.monotonic() + delay > deadline:
                raise BrokerError(f"broker not reachable for {broker.where} within {timeout:g} s: {reason}") from None
        on_retry(reason, delay)
        if _sleep_unless(should_stop, delay):
            return None
        delay = min(delay * 2, RETRY_MAX_DELAY)


def node_of(connection: pika.BlockingConnection) -> str:
    """The node a connection reached (host:port), of those the broker's URL lists."""
    params = connection._impl.params  # pika keeps the parameters it connected with here
    return f"{params.host}:{params.port}"


def _sleep_unless(should_stop: Callable[[], bool], seconds: float) -> bool:
    """Sleep in short slices so that a signal's flag is seen at once."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if should_stop():
            return True
        time.sleep(min(left, 0.1))
    return should_stop()


def _cause(exc: BaseException) -> BaseException:
    """The error a pika error wraps, all the way down."""
    wrapped = getattr(exc, "exception", None)  # pika's connector errors keep the cause here
    if isinstance(wrapped, BaseException):
        return _cause(wrapped)
    for arg in exc.args:
        if isinstance(arg, BaseException):
            return _cause(arg)
    return exc


def describe(exc: BaseException) -> str:
    """A short reason for a pika error, found in what it wraps."""
    exc = _cause(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or "certificate verify failed"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, pika.exceptions.ConnectionClosed):
        return f"closed by the broker ({exc.reply_code} {exc.reply_text})"
    if isinstance(exc, AMQPConnectorStackTimeout):
        return "no AMQP handshake in time (the link loses packets, or the broker is overloaded)"
    text = str(exc)
    return text if text else type(exc).__name__


def blocked_reason(frame: pika.frame.Method) -> str:
    """Why the broker blocks a connection (``connection.blocked``: "low on disk"), as at most 200 characters."""
    return (as_text(getattr(frame.method, "reason", None)) or "no reason given")[:200]
