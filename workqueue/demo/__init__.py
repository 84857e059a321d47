"""The demos: make demo (lab.py: site.yml and a stopped worker on the virtual lab),
make drills (drills.py: every fault in both modes) and make demo-processes
(local.py: the tutorial as local processes, no Docker).
"""
