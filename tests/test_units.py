"""Pure logic: task texts, task-number lists, URLs, options from flags and the environment."""

from __future__ import annotations

import argparse
import io
import re
import threading
import tomllib
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from pika.adapters.blocking_connection import BlockingChannel

from workqueue import cli
from workqueue.connection import HEARTBEAT_SECONDS, broker_from_url
from workqueue.demo import drills
from workqueue.events import read_events
from workqueue.machine import apt_sources, role_docs
from workqueue.machine.packages import SetupError
from workqueue.output import Output
from workqueue.queues import DEAD_LETTER_QUEUE, Mode, queue_spec
from workqueue.report.gathered import Container
from workqueue.report.live import SILENT_SECONDS
from workqueue.report.web.__main__ import parse_listen
from workqueue.report.web.heard import Heard
from workqueue.tasks import TaskLabel, seq_list, task_body, task_label, task_properties, work_seconds
from workqueue.worker_image import worker as worker_module

ROOT = Path(__file__).resolve().parents[1]


def test_task_text_is_the_tutorials() -> None:
    assert task_body(1) == "Hello World! #1 ."
    assert task_body(3) == "Hello World! #3 ..."
    assert task_body(2, "Resize image...") == "Resize image... #2"
    assert work_seconds(task_body(3), 1.0) == 3.0
    assert work_seconds(task_body(3), 0) == 0


RUN = "20261204-120000-0a01"


def test_task_properties_carry_run_seq_and_message_id() -> None:
    label = task_label(task_properties(RUN, 7, 10, persistent=True, user="lab"), "lab")
    assert (label.run_id, label.seq, label.message_id) == (RUN, 7, f"{RUN}.7")
    assert task_properties(RUN, 7, 10, persistent=True, user="lab").delivery_mode == 2
    assert task_properties(RUN, 7, 10, persistent=False, user="lab").delivery_mode == 1


def test_seq_list_folds_runs() -> None:
    assert seq_list([3, 7, 8, 9, 10, 12]) == "#3, #7-#10, #12"
    assert seq_list([5]) == "#5"
    assert seq_list([]) == ""


def test_modes_declare_the_tutorials_queues() -> None:
    assert queue_spec(Mode.NOACK).name == "hello"
    assert not queue_spec(Mode.NOACK).durable
    ack = queue_spec(Mode.ACK)
    assert (ack.name, ack.durable, ack.persistent_messages) == ("task_queue", True, True)
    # As the tutorial declares them: no argument the tutorial does not pass (dead-lettering is a policy).
    assert ack.arguments == {} and queue_spec(Mode.NOACK).arguments == {}
    assert queue_spec(Mode.ACK, "quorum").arguments == {"x-queue-type": "quorum"}
    assert queue_spec(Mode.ACK, "classic").arguments == {"x-queue-type": "classic"}
    with pytest.raises(ValueError, match="unknown queue type 'stream': use classic, quorum, or none"):
        queue_spec(Mode.ACK, "stream")
    with pytest.raises(ValueError, match="drop --queue-type quorum"):
        queue_spec(Mode.NOACK, "quorum")


def test_the_brokers_policies_name_the_queues_the_programs_declare() -> None:
    defaults = yaml.safe_load((ROOT / "roles" / "rabbitmq" / "defaults" / "main.yml").read_text())
    (policy,) = defaults["rabbitmq_policies"]
    ack = queue_spec(Mode.ACK)
    assert re.fullmatch(policy["pattern"], ack.name) and not re.fullmatch(policy["pattern"], DEAD_LETTER_QUEUE)
    assert policy["tags"]["dead-letter-routing-key"] == ack.dead_letter_queue == DEAD_LETTER_QUEUE
    assert policy["tags"]["dead-letter-exchange"] == ""  # the default exchange routes by queue name
    assert set(defaults["rabbitmq_lab_queues"]) == {ack.name, queue_spec(Mode.NOACK).name, DEAD_LETTER_QUEUE}


def test_url_sets_heartbeat_and_keeps_the_password_out_of_messages(tmp_path: Path) -> None:
    broker = broker_from_url("amqp://alice:s3cret@broker.lab:5673/lab")
    assert broker.parameters.heartbeat == HEARTBEAT_SECONDS
    assert broker.where == "user 'alice' at broker.lab:5673, vhost 'lab'"
    assert broker_from_url("amqp://a:b@h/%2F?heartbeat=5").parameters.heartbeat == 5
    with pytest.raises(ValueError) as bad:
        broker_from_url("http://alice:s3cret@broker.lab/")
    assert "s3cret" not in str(bad.value)
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert broker_from_url("amqp://alice@h/", str(secret)).parameters.credentials.password == "from-file"


def test_flag_wins_over_environment_which_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    monkeypatch.setenv("TASK_MODE", "noack")
    assert cli.option(parser, "ack", "--mode", "TASK_MODE", cli.mode, Mode.ACK) is Mode.ACK
    assert cli.option(parser, None, "--mode", "TASK_MODE", cli.mode, Mode.ACK) is Mode.NOACK
    monkeypatch.delenv("TASK_MODE")
    assert cli.option(parser, None, "--mode", "TASK_MODE", cli.mode, Mode.ACK) is Mode.ACK


def test_read_events_skips_what_is_not_an_event() -> None:
    lines = ['{"event":"done","ts":1764402000.5,"seq":1}', "plain warning", "{not json", '{"no_event": 1}', '["list"]']
    assert list(read_events(lines)) == [{"event": "done", "ts": 1764402000.5, "seq": 1}]


def test_images_pin_the_same_pika_as_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    images = (ROOT / "workqueue" / "requirements.txt").read_text().split()
    assert [pin for pin in project if pin.startswith("pika")] == images


def _python_files(*, but: set[str]) -> list[Path]:
    """The project's Python files, but those in the top-level folders ``but`` (and the virtualenv, the build)."""
    skipped = but | {".venv", "build"}
    return [f for f in ROOT.glob("**/*.py") if f.relative_to(ROOT).parts[0] not in skipped]


def test_pip_installs_one_top_level_package_that_holds_every_folder_of_python() -> None:
    """pyproject's packages: all inside workqueue, each found where package-dir says, none left out."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, mapped = tool["packages"], tool["package-dir"]

    def folder(package: str) -> Path:
        for name, where in mapped.items():
            if package == name or package.startswith(name + "."):
                return Path(ROOT / where / Path(*package[len(name) :].split(".")[1:]))
        return ROOT / Path(*package.split("."))

    assert {package.split(".")[0] for package in packages} == {"workqueue"}
    assert all(folder(package).is_dir() for package in packages), packages
    installed = {folder(package) for package in packages}
    # Ansible runs the roles' modules and files on the hosts: they are not the package's.
    left_out = {f.parent for f in _python_files(but={"tests", "bench", "roles", "playbooks"})} - installed
    assert left_out == set()


def test_no_program_edits_sys_path() -> None:
    """The programs import the installed package; none puts a folder of the checkout on the import path."""
    edit = re.compile(r"sys\.path\.(insert|append|extend)|sys\.path\s*\+?=")
    assert [str(f.relative_to(ROOT)) for f in _python_files(but=set()) if edit.search(f.read_text())] == []


def test_the_worker_containers_name_is_the_same_for_the_playbooks_the_role_and_the_tools() -> None:
    from workqueue.virtual_lab.lab_runs import WORKER_CONTAINER

    lab = yaml.safe_load((ROOT / "playbooks" / "group_vars" / "all" / "lab.yml").read_text())
    role = yaml.safe_load((ROOT / "roles" / "worker" / "defaults" / "main.yml").read_text())
    assert WORKER_CONTAINER.format("") == lab["worker_container_prefix"] == role["worker_container_prefix"]


def test_the_architectures_images_are_built_for_are_those_the_role_ships_by_a_hosts_facts() -> None:
    from workqueue.machine import emulation, images

    role = yaml.safe_load((ROOT / "roles" / "lab_client" / "vars" / "main.yml").read_text())
    assert role["_lab_client_docker_arch"] == {kernel: arch for arch, kernel in emulation.KERNEL_NAMES.items()}
    # This machine's own images keep their names; another architecture's carry it after the tag, as the role asks.
    assert images.suffix(None) == images.suffix(emulation.native()) == ""
    foreign = next(arch for arch in emulation.KERNEL_NAMES if arch != emulation.native())
    assert images.suffix(foreign) == f"-{foreign}" and "'-' ~ _lab_client_arch" in role["_lab_client_names"]
    with pytest.raises(SetupError, match="ARCH=arm64"):
        emulation.check_architecture("riscv64")


def test_url_without_password_needs_a_password_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="names user 'alice' but no password"):
        broker_from_url("amqp://alice@h/")
    secret = tmp_path / "pw"
    secret.write_text("s3cret")
    assert broker_from_url("amqp://alice@h/", str(secret)).parameters.credentials.password == "s3cret"


def test_amqps_verifies_the_brokers_certificate_and_name() -> None:
    import ssl

    tls = broker_from_url("amqps://guest:guest@broker.lab:5671/").parameters.ssl_options
    assert tls is not None and tls.server_hostname == "broker.lab"
    assert tls.context.verify_mode == ssl.CERT_REQUIRED and tls.context.check_hostname
    assert broker_from_url("amqp://guest:guest@broker.lab/").parameters.ssl_options is None


def test_events_are_valid_json_whatever_the_values() -> None:
    import io

    from workqueue.output import Output

    events = io.StringIO()
    out = Output({"program": "worker", "host": 'a"b\\c'}, io.StringIO(), events)
    fields: dict[str, Any] = {
        "seq": 3,
        "ok": True,
        "none": None,
        "f": 0.25,
        "text": 'é\n\t"x"',
        "seqs": [1, 2],
        "big": 10**20,
    }
    out.event("done", **fields)
    out.flush()
    [record] = list(read_events(events.getvalue().splitlines()))
    assert record == {"event": "done", "ts": record["ts"], "program": "worker", "host": 'a"b\\c', **fields}


def test_event_times_are_to_the_millisecond_and_a_pair_shares_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    out = Output({"program": "worker"}, io.StringIO(), io.StringIO())
    label = TaskLabel(RUN, 7, f"{RUN}.7").encoded()
    for now, stamp in [
        (1764402000.0059, 1764402000.005),
        (1764402000.9999, 1764402000.999),
        (1764402001.0, 1764402001.0),
    ]:
        monkeypatch.setattr(time, "time", lambda now=now: now)
        received, done = read_events(
            out.event_pair("received", label, "done", label + ',"work_seconds":0.0').splitlines()
        )
        [alone] = read_events([out.event_line("alive")])
        assert received["ts"] == done["ts"] == alone["ts"] == stamp
        assert (received["event"], received["seq"], received["message_id"]) == ("received", 7, f"{RUN}.7")
        assert (done["event"], done["run_id"], done["work_seconds"]) == ("done", RUN, 0.0)


def test_a_foreign_task_says_where_it_came_from() -> None:
    import pika

    from workqueue.tasks import task_origin

    assert not task_label(pika.BasicProperties(delivery_mode=2), "lab").from_a_run
    assert task_label(task_properties(RUN, 1, 1, persistent=True, user="lab"), "lab").from_a_run
    # The same headers from another user (the broker vouches for user_id) are a foreign task's.
    assert not task_label(task_properties(RUN, 1, 1, persistent=True, user="student"), "lab").from_a_run
    assert task_origin(pika.BasicProperties(), "Hello World! ..") == "another producer: 'Hello World! ..'"
    assert task_origin(pika.BasicProperties(app_id="pc7"), "x" * 100) == f"pc7: '{'x' * 57}...'"


@pytest.mark.parametrize("role", sorted(path.name for path in (ROOT / "roles").iterdir()))
def test_each_role_variable_is_described_once_in_its_argument_specs(role: str) -> None:
    """meta/argument_specs.yml is the one description: the README's table is made from it, defaults/main.yml
    holds values with no comment on a variable, and the inventory's settings of the role point to its README."""
    spec_file = ROOT / "roles" / role / "meta" / "argument_specs.yml"
    readme = (ROOT / "roles" / role / "README.md").read_text()
    assert role_docs.with_table(readme, role_docs.table(spec_file)) == readme, "run make role-docs"
    names = set(role_docs.variables(spec_file))
    for path in (ROOT / "roles" / role / "defaults" / "main.yml", ROOT / "inventory" / "group_vars" / "all.yml"):
        block: list[str] = []  # the comment lines right above a line
        for line in path.read_text().splitlines():
            name = line.split(":", 1)[0]
            if name in names and block:
                said = " ".join(block)
                assert "README.md" in said, f"{path.relative_to(ROOT)} describes {name} again: {said}"
            block = [*block, line] if line.startswith("#") else []


def _derived(role: Path) -> set[str]:
    """The names a role gives values it works out: vars/main.yml, set_fact and register (in blocks too)."""
    names = set(yaml.safe_load((role / "vars" / "main.yml").read_text()) or {}) if (role / "vars").is_dir() else set()
    for tasks in (role / "tasks").glob("*.yml"):
        stack = list(yaml.safe_load(tasks.read_text()) or [])
        while stack:
            task = stack.pop()
            stack += task.get("block", []) + task.get("rescue", []) + task.get("always", [])
            names |= {task["register"]} if "register" in task else set()
            names |= set(task.get("ansible.builtin.set_fact", {})) - {"cacheable"}
    return names


@pytest.mark.parametrize("role", sorted(path.name for path in (ROOT / "roles").iterdir()))
def test_what_a_role_derives_is_named_apart_from_its_settings(role: str) -> None:
    """Settings are the spec's options; a value the role works out starts with an underscore, unless it is a
    fact the role sets for others, which its README names."""
    folder = ROOT / "roles" / role
    settings = set(role_docs.variables(folder / "meta" / "argument_specs.yml"))
    assert not {name for name in settings if name.startswith("_")}
    readme = (folder / "README.md").read_text()
    public = {name for name in _derived(folder) if not name.startswith("_")}
    assert {name for name in public if f"`{name}`" not in readme} == set()
    assert not public & settings


def test_the_inventorys_settings_of_a_role_are_the_roles_defaults() -> None:
    """inventory/group_vars/all.yml documents the lab's own settings; a role variable there has the role's default."""
    settings = yaml.safe_load((ROOT / "inventory" / "group_vars" / "all.yml").read_text())
    defaults = {}
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            defaults.update({name: option.get("default") for name, option in entry.get("options", {}).items()})
    of_roles = {name: value for name, value in settings.items() if name in defaults}
    assert {"rabbitmq_user", "rabbitmq_tls", "worker_prefetch", "worker_image", "producer_image"} <= set(of_roles)
    assert {name: defaults[name] for name in of_roles} == of_roles


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_the_links_between_the_guide_and_docs_lead_somewhere(page: str) -> None:
    """Every relative link of the README and docs/ names a file that exists, and a heading there if it names one."""
    source = ROOT / page
    for target, anchor in re.findall(r"\]\((?!https?:)([^)#\s]*)(?:#([^)\s]+))?\)", source.read_text()):
        path = (source.parent / target).resolve() if target else source
        assert path.exists(), f"{page} links to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
            assert anchor in {_anchor(h) for h in headings}, f"{page} links to {target}#{anchor}: no such heading"


def test_a_url_may_name_the_nodes_of_a_cluster_and_each_gets_the_same_login() -> None:
    broker = broker_from_url("amqp://alice:s3cret@node1:5673,node2,node3:5680/lab?heartbeat=5")
    assert [(n.host, n.port) for n in broker.nodes] == [("node1", 5673), ("node2", 5672), ("node3", 5680)]
    assert {(n.credentials.username, n.credentials.password, n.virtual_host, n.heartbeat) for n in broker.nodes} == {
        ("alice", "s3cret", "lab", 5)
    }
    assert broker.where == "user 'alice' at node1:5673, node2:5672, node3:5680, vhost 'lab'"
    tls = broker_from_url("amqps://alice:s3cret@node1,node2/lab")
    assert [n.ssl_options.server_hostname for n in tls.nodes] == ["node1", "node2"]  # each checked by its own name
    with pytest.raises(ValueError, match="names no host"):
        broker_from_url("amqp://alice:s3cret@node1,,node3/lab")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("127.0.0.1:8765", ("127.0.0.1", 8765)), ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:8765", ("::1", 8765))],
)
def test_the_web_views_listen_address_is_host_and_port(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize("text", ["8765", "localhost", ":8765", "host:0", "host:65536", "host:http"])
def test_a_listen_address_without_host_or_port_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_listen(text)


def test_the_web_view_reads_what_it_heard_as_the_report_reads_a_lab() -> None:
    """Stopped when it said so, running again once it starts, not known (and said) once silent."""
    clock = [1000.0]  # the view's own (monotonic) clock; the worker's stamps are 40 s behind this machine's
    heard = Heard(clock=lambda: clock[0])
    worker = {"program": "worker", "host": "pc2", "worker": "worker-1"}

    def heard_after(seconds: float) -> Container:
        clock[0] += seconds
        return heard.read()[0].containers[0]

    heard.add([{**worker, "event": "worker_started", "ts": 100.0 - 40, "mode": "noack"}])
    heard.add([{"program": "producer", "event": "run_started", "ts": 101.0, "run_id": "r", "mode": "noack"}])
    running = heard_after(5)
    assert (running.worker, running.running, heard.mode) == ("pc2/worker-1", True, Mode.NOACK)
    silent = heard_after(SILENT_SECONDS)  # silent since its last word came, whatever its clock says
    assert (silent.running, silent.status) == (None, f"silent for {SILENT_SECONDS + 5:.0f} s")
    heard.add([{**worker, "event": "worker_stopped", "ts": 110.0 - 40}])
    assert heard_after(1).running is False
    assert heard_after(400).running is False, "stopped stays stopped, however long"
    heard.add([{**worker, "event": "worker_started", "ts": 120.0 - 40}, {**worker, "event": "alive", "ts": 125.0 - 40}])
    assert heard_after(1).running is True
    gathered = heard.read()[0]
    assert "alive" not in {e["event"] for e in gathered.containers[0].events}, "what the report never sees"
    assert [e["event"] for e in gathered.producer_events] == ["run_started"]


DEB822 = """Types: deb deb-src
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian
Suites: bookworm-backports
Components: main
Enabled: no
"""
ONE_LINE = """# the security updates
deb [signed-by=/usr/share/keyrings/debian.gpg arch=amd64] http://mirror.example/debian-security bookworm-security main
deb-src http://mirror.example/debian bookworm main
deb http://elsewhere.example/repo stable main
"""


@pytest.mark.parametrize("layout", ["deb822", "one-line", "both"])
def test_the_machines_apt_sources_in_either_format_give_the_release_asked_for(tmp_path: Path, layout: str) -> None:
    (tmp_path / "sources.list.d").mkdir()
    if layout in ("deb822", "both"):
        (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    if layout in ("one-line", "both"):
        (tmp_path / "sources.list").write_text(ONE_LINE)
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    text = apt_sources.for_release("trixie", tmp_path, os_release)
    assert "bookworm" not in text and "elsewhere.example" not in text and "backports" not in text
    if layout != "one-line":
        assert "Suites: trixie trixie-updates\nComponents: main contrib" in text
    if layout != "deb822":
        security = "URIs: http://mirror.example/debian-security\nSuites: trixie-security\nComponents: main\n"
        assert security + "Signed-By: /usr/share/keyrings/deb" in text


def test_no_debian_mirror_in_the_apt_sources_is_one_line_saying_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://archive.ubuntu.example/ubuntu noble main\n")
    os_release = tmp_path / "os-release"
    os_release.write_text("VERSION_CODENAME=bookworm\n")
    with pytest.raises(SetupError, match=r"name no Debian mirror for its release \(bookworm\).*either format"):
        apt_sources.for_release("trixie", tmp_path, os_release)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _CancelledOnThaw(threading.Event):
    """A task's wait in a worker frozen ``frozen`` seconds past its work time: the process
    thaws with the time passed, and the I/O thread, finding the connection gone, cancels."""

    def __init__(self, clock: _Clock, frozen: float) -> None:
        super().__init__()
        self.clock, self.frozen = clock, frozen

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += self.frozen + (timeout or 0)
        self.set()
        return True


@pytest.mark.parametrize(("frozen", "fate"), [(20.0, "done"), (-0.5, "abandoned")])
def test_a_worker_thawed_past_the_brokers_patience_counts_its_task_done_whichever_thread_wakes_first(
    monkeypatch: pytest.MonkeyPatch, frozen: float, fate: str
) -> None:
    """Frozen 20 s (heartbeat 3 s): the work is done, late, its ack refused, though the I/O
    thread cancelled first. Cancelled half a second before the work's end: given back."""
    clock = _Clock()
    monkeypatch.setattr(worker_module.time, "monotonic", clock)
    config = worker_module.parse_args(["--url", "amqp://u:p@localhost/?heartbeat=3", "--mode", "ack"])
    events = io.StringIO()
    worker = worker_module.Worker(config, Output({"program": "worker"}, io.StringIO(), events))
    label = TaskLabel(RUN, 1, "m1")
    cancelled = _CancelledOnThaw(clock, frozen)
    channel = cast(BlockingChannel, None)  # never used: neither path acknowledges
    worker._inbox.put(worker_module.Delivery(channel, 1, label, 1.0, cancelled, label.encoded()))
    worker._inbox.put(None)
    worker._work_loop()
    worker.out.flush()
    (event,) = [e for e in read_events(events.getvalue().splitlines()) if e["event"] in ("done", "abandoned")]
    assert event["event"] == fate and event["seq"] == 1
    assert event.get("refused") is (True if fate == "done" else None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--brokers", "2"], "--brokers (BROKERS=): 1 or 3, not 2"),
        (["--faults", "partition"], "--faults: partition needs a cluster: BROKERS=3 make drills (--brokers 3)"),
        (["--brokers", "3", "--faults", "stop,split"], "--faults: unknown split: use stop, kill,"),
    ],
)
def test_make_drills_refuses_what_it_cannot_run_before_touching_a_lab(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        drills.main(args)
    assert stopped.value.code == 2
    said = capsys.readouterr().err.splitlines()[-1]
    assert message in said and "Traceback" not in said
