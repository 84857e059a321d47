"""The live view in a browser (python -m report.web): see __main__.py."""
