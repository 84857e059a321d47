"""The producer program (installed as workqueue.producer; its image is the Dockerfile's producer stage)."""
