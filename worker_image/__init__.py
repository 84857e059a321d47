"""The worker program and its container image (Dockerfile, health check)."""
