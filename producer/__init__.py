"""The producer program and its container image (Dockerfile)."""
