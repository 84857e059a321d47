"""The live view in a browser (python -m workqueue.report.web): see __main__.py."""
