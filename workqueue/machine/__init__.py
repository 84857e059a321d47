"""This machine's side of the project: what it installs for itself (packages.py),
the Docker engine it runs (engine.py), a RabbitMQ node on loopback for the tests,
the local demo and the benchmarks (local_broker.py), and the images it builds
with no registry: the worker and producer that real labs ship (images.py).

Run ``python -m workqueue.machine --help`` for its commands (make broker, engine, images, wheelhouse).
"""
