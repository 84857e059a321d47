"""The worker program and its health check (installed as workqueue.worker_image; the Dockerfile's worker stage)."""
