"""The project on one machine: a Docker engine, images built with no registry,
a local broker for the tests and the process demo, and the virtual lab's hosts.

Run ``python -m virtual_lab --help`` for its commands.
"""
