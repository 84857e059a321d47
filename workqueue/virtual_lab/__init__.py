"""A lab on this machine: containers that behave like fresh Debian hosts (own
address, systemd, SSH) for the playbooks (hosts.py, lab_runs.py), or the
programs as local processes beside a local broker (processes.py).

Run ``python -m workqueue.virtual_lab --help`` for its commands (make lab-up, lab-down, lab-status).
"""
