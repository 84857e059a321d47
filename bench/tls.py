"""What TLS costs the worker and the producer: each over AMQPS against itself over plain AMQP, in one run.

    python bench/tls.py [--messages N] [--rounds R]      (make bench-tls)

A RabbitMQ node of the benchmark's own (workqueue-bench-tls, loopback only)
listens for plain AMQP on 5674 and for AMQPS on 5675, with a CA and a broker
certificate made here as the rabbitmq role makes the lab's (an ECDSA P-256 key,
the broker named by its address). The programs run as in bench/throughput.py,
zero-dot tasks, and verify the broker against the CA (--ca-file), as the lab's
containers do; the rounds interleave the two, and the node is stopped at the end.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import throughput  # bench/throughput.py, beside this file
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from workqueue.machine import local_broker
from workqueue.queues import Mode

FOLDER = throughput.ROOT / "build" / "bench-tls"
PLAIN_PORT, TLS_PORT = 5674, 5675
VHOST = "workqueue-bench"


@dataclass(frozen=True)
class TlsNode(local_broker.Node):
    config: Path = FOLDER / "rabbitmq.conf"

    @property
    def environment(self) -> dict[str, str]:
        return {**super().environment, "RABBITMQ_CONFIG_FILE": str(self.config)}


NODE = TlsNode("workqueue-bench-tls@localhost", PLAIN_PORT)


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    signer_name, signer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, signer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Written for the broker, which runs as the rabbitmq user: the key readable by it alone."""
    path.write_bytes(data)
    path.chmod(mode)
    shutil.chown(path, "rabbitmq", "rabbitmq")


def make_certificates() -> Path:
    """The CA and the broker's certificate and key in FOLDER; the CA's path."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    FOLDER.chmod(0o750)
    shutil.chown(FOLDER, group="rabbitmq")
    ca_key, broker_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("workqueue-bench CA", ca_key, None)
    broker = _certificate("localhost", broker_key, ("workqueue-bench CA", ca_key))
    pem = serialization.Encoding.PEM
    _write(FOLDER / "ca.crt", ca.public_bytes(pem), 0o644)
    _write(FOLDER / "broker.crt", broker.public_bytes(pem), 0o644)
    key = broker_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write(FOLDER / "broker.key", key, 0o400)
    config = [
        f"listeners.ssl.default = 127.0.0.1:{TLS_PORT}",
        f"ssl_options.cacertfile = {FOLDER / 'ca.crt'}",
        f"ssl_options.certfile = {FOLDER / 'broker.crt'}",
        f"ssl_options.keyfile = {FOLDER / 'broker.key'}",
        "ssl_options.verify = verify_none",
        "ssl_options.fail_if_no_peer_cert = false",
    ]
    _write(NODE.config, "\n".join(config).encode() + b"\n", 0o644)
    return FOLDER / "ca.crt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000, help="messages per measurement (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each measuring everything once (default 3)")
    args = parser.parse_args()
    ca_file = make_certificates()
    local_broker.ctl(NODE, "stop", check=False)  # a node left from an earlier run has the old certificates
    local_broker.ensure_broker(NODE)
    plain_url = local_broker.prepare_vhost(NODE, VHOST)
    throughput.URL = plain_url  # the queues are filled and emptied over plain AMQP, outside the timing
    tls_url = plain_url.replace("amqp://", "amqps://", 1).replace(f":{PLAIN_PORT}/", f":{TLS_PORT}/", 1)
    ways = {"plain": ("--url", plain_url), "tls": ("--url", tls_url, "--ca-file", str(ca_file))}
    n = args.messages
    measures: dict[str, Callable[[Path, tuple[str, ...]], float]] = {
        "worker: consume, noack": lambda work, way: throughput.worker_drain(Mode.NOACK, n, 0, work, way),
        "worker: consume, ack, prefetch 1": lambda work, way: throughput.worker_drain(Mode.ACK, n, 1, work, way),
        "worker: consume, ack, prefetch 50": lambda work, way: throughput.worker_drain(Mode.ACK, n, 50, work, way),
        "producer: publish, noack": lambda work, way: throughput.producer_publish(Mode.NOACK, n, work, way),
        "producer: publish, ack (confirms)": lambda work, way: throughput.producer_publish(Mode.ACK, n, work, way),
    }
    samples: dict[str, list[tuple[float, float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                for label, measure in measures.items():
                    rates = (measure(Path(tmp), ways["tls"]), measure(Path(tmp), ways["plain"]))
                    samples.setdefault(label, []).append(rates)
    finally:
        local_broker.ctl(NODE, "stop", check=False)
    print(f"{n} zero-dot tasks per measurement, broker on loopback, median of {args.rounds} rounds")
    print(f"{'measurement':40} {'TLS/s':>8} {'plain/s':>8} {'ratio':>6}")
    for label, rows in samples.items():
        tls, plain = (statistics.median(column) for column in zip(*rows, strict=True))
        print(f"{label:40} {tls:8.0f} {plain:8.0f} {tls / plain:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
