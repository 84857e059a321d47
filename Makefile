# The two commands a newcomer types: `make demo` and `make test`. Each installs
# what it needs (a virtualenv in .venv, RabbitMQ, a Docker engine, the images).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: help venv role-docs demo drills soak demo-processes watch watch-web test test-quick lint broker engine images wheelhouse bench bench-tls bench-releases bench-scale bench-arch bench-lossy bench-cpu lab-up lab-down lab-status clean

help:
	@echo "make demo    the project on a virtual lab: site.yml, then a worker stopped mid-run, in noack and ack mode"
	@echo "make drills  every fault of drill.yml (a worker's, a lossy link, the broker's) in both modes; one table"
	@echo "             BROKERS=3: on a cluster, with its nodes' faults (killed, stopped, partitioned away)"
	@echo "make soak [MINUTES=30] [SEED=n] [BROKERS=1|3]  a long run under random faults, then a ledger of every task"
	@echo "make demo-processes  the tutorial as local processes, no Docker needed"
	@echo "make watch [INVENTORY=...]  the live view: the queue and each worker's task, while a run goes on"
	@echo "make watch-web [INVENTORY=...] [LISTEN=host:port]  the live view in a browser, the timeline drawing itself"
	@echo "make test    lint and run every test (installs RabbitMQ, Docker and the images if needed)"
	@echo "make test-quick  lint, units and the programs against a local broker: no Docker, no lab"
	@echo "make images [ARCH=arm64]  build the worker and producer images with no registry (for Pis too)"
	@echo "make bench   compare the worker and producer with bare pika loops"
	@echo "make bench-tls  the worker and producer over TLS against plain AMQP"
	@echo "make bench-releases  site.yml on Debian 12 and 13 hosts, side by side"
	@echo "make bench-scale  the lab at 5, 10 and 20 worker hosts: times, memory, a plot"
	@echo "make bench-lossy  a lossy link to the broker: drops and tasks done twice per loss rate and heartbeat"
	@echo "make bench-cpu  where a playbook's CPU goes, the lab's hosts or this machine (on make lab-up's lab)"
	@echo "make bench-arch  an idle worker's memory: this machine's image, and a Raspberry Pi's under emulation"
	@echo "make lab-up [HOSTS=5] [BROKERS=1|3] [RELEASE=bookworm|trixie|mixed]  a virtual lab: Debian hosts with systemd and SSH (lab-down, lab-status)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	  else echo "error: $(PYTHON) cannot make a virtualenv: sudo apt-get install python3-venv" >&2; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# setuptools tells every editable install of a flat layout (the top-level folders users asked for)
	@# that folders in the working directory may shadow the package: information, not a fault of ours.
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

broker: venv
	$(PY) -m workqueue.machine broker

engine: venv
	$(PY) -m workqueue.machine engine

# ARCH=arm64 (or "arm64 amd64"): for worker hosts of other architectures too (Raspberry Pis), under emulation.
images: venv
	$(PY) -m workqueue.machine images $(foreach a,$(ARCH),--arch $(a))

# The images' pinned packages as wheels (build/wheelhouse), for a docker build of your own.
wheelhouse: venv
	$(PY) -m workqueue.machine wheelhouse

demo: venv
	$(PY) -m workqueue.demo.lab

# Every fault of playbooks/drill.yml in both modes on the virtual lab; the table in reports/drills.md.
drills: venv
	$(PY) -m workqueue.demo.drills --brokers '$(BROKERS)'

# A long ack-mode run while faults drawn from SEED strike one after another (MINUTES=30; BROKERS=3: a
# cluster's faults too), then a ledger of every task; the table in reports/soak-SEED[-cluster].md.
soak: venv
	$(PY) -m workqueue.demo.soak --minutes '$(MINUTES)' --seed '$(SEED)' --brokers '$(BROKERS)'

demo-processes: broker
	$(PY) -m workqueue.demo.local

# The broker is found from INVENTORY (default: inventory/lab.yml, else the virtual lab's).
watch: venv
	$(PY) -m workqueue.report.watch $(if $(INVENTORY),--inventory '$(INVENTORY)')

# The same, in a browser for the projector: open the address it prints.
# LISTEN=0.0.0.0:8765 shows the page to the lab's network (it only reads, and shows no password).
watch-web: venv
	$(PY) -m workqueue.report.web $(if $(INVENTORY),--inventory '$(INVENTORY)') $(if $(LISTEN),--listen '$(LISTEN)')

lint: venv
	$(PY) -m workqueue.machine.role_docs --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/yamllint -c .yamllint.yml .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/ansible-lint --nocolor -q

# Each role's table of variables in its README, made from its meta/argument_specs.yml (make lint checks it).
role-docs: venv
	$(PY) -m workqueue.machine.role_docs

# The tests start RabbitMQ nodes of their own (workqueue-tests, port 5673) and never touch yours.
# Each run keeps its record in build/tests/: the output (with the slowest tests) and a JUnit XML of every test's time.
test: lint images
	@mkdir -p build/tests && rm -f build/tests/playbooks.jsonl
	set -o pipefail; $(VENV)/bin/pytest --junitxml=build/tests/junit.xml 2>&1 | tee build/tests/pytest.log

# For your own loop: lint, the units and the programs against the tests' broker (no Docker, no lab).
# The markers in pyproject.toml say what each test needs.
test-quick: lint
	$(VENV)/bin/pytest -m "not docker and not lab"

HOSTS ?= 5
BROKERS ?= 1
MINUTES ?= 30
SEED ?=
RELEASE ?= bookworm

lab-up: venv
	$(PY) -m workqueue.virtual_lab up --hosts '$(HOSTS)' --brokers '$(BROKERS)' --release '$(RELEASE)'

lab-down: venv
	$(PY) -m workqueue.virtual_lab down

lab-status: venv
	$(PY) -m workqueue.virtual_lab status

bench: broker
	$(PY) bench/throughput.py

# What TLS costs the worker and the producer (a node of its own, ports 5674/5675).
bench-tls: venv
	$(PY) bench/tls.py

# How site.yml, report.yml and the lab grow with 5, 10 and 20 worker hosts (a virtual lab of its own, removed after).
bench-scale: venv
	$(PY) bench/scale.py

# An idle worker's memory in this machine's image and in a Raspberry Pi's, emulated (builds that one if missing).
bench-arch: broker
	$(PY) bench/architectures.py

# site.yml on Debian 12 and Debian 13 hosts, side by side (a virtual lab of its own, removed after).
bench-releases: venv
	$(PY) bench/releases.py

# A worker host's link to the broker made lossy at several rates, at two heartbeats (a virtual lab of its own).
bench-lossy: venv
	$(PY) bench/lossy.py

# Where a playbook's CPU goes on make lab-up's lab, deployed: its hosts, or Ansible on this machine.
bench-cpu: venv
	$(PY) bench/playbook_cpu.py $(if $(PLAYBOOK),--playbook '$(PLAYBOOK)')

clean:
	rm -rf build $(VENV)
