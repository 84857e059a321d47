# The lab's two programs, from one recipe with a shared first stage. Build from the repository root:
#   docker build --target worker -t workqueue-lab/worker .
#   docker build --target producer -t workqueue-lab/producer .
# With no registry at hand, pass a local base: --build-arg BASE_IMAGE=workqueue-lab/python
# (make images builds one). Python packages come from build/wheelhouse (make wheelhouse).
ARG BASE_IMAGE=python:3.12-slim

# What both programs need: a virtualenv with pika, the shared workqueue modules, and a
# non-root user (uid 10001: the lab_client role gives the broker's password file to it).
FROM ${BASE_IMAGE} AS runtime
COPY workqueue/requirements.txt /tmp/requirements.txt
COPY build/wheelhouse/ /tmp/wheelhouse/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse \
        -r /tmp/requirements.txt \
 && /opt/venv/bin/python -m pip uninstall --yes --quiet pip \
 && rm -rf /tmp/wheelhouse /tmp/requirements.txt \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin workqueue
# The package's modules the programs use (not the control machine's tools in its subfolders).
COPY workqueue/*.py /app/workqueue/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER workqueue

# The tutorial's worker.py: one second of work per dot.
FROM runtime AS worker
LABEL org.opencontainers.image.title="workqueue-lab worker" \
      org.opencontainers.image.description="RabbitMQ tutorial 2 worker (pika): one second of work per dot" \
      org.opencontainers.image.licenses="MIT"
COPY worker_image/*.py /app/workqueue/worker_image/
ENV HEALTH_FILE=/tmp/worker-consuming
# Healthy while the worker is connected and consuming (it touches HEALTH_FILE).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-m", "workqueue.worker_image.healthcheck"]
# The worker handles SIGTERM itself (docker stop): it gives up the task in hand and exits 0.
ENTRYPOINT ["python", "-m", "workqueue.worker_image.worker"]

# The tutorial's new_task.py: publishes COUNT tasks.
FROM runtime AS producer
LABEL org.opencontainers.image.title="workqueue-lab producer" \
      org.opencontainers.image.description="RabbitMQ tutorial 2 producer (pika): publishes COUNT tasks" \
      org.opencontainers.image.licenses="MIT"
COPY producer/__init__.py producer/new_task.py producer/confirms.py producer/blocked.py /app/workqueue/producer/
ENTRYPOINT ["python", "-m", "workqueue.producer.new_task"]
