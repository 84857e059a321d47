"""The report and the live view, on event streams recorded from real runs on the virtual lab.

tests/recordings/ holds what playbooks/report.yml gathered after three runs (five hosts:
lab1 broker, lab2-lab4 workers, lab5 producer):
- noack_worker_stopped: noack mode, 10 tasks, lab3's worker stopped mid-run (#10 lost with it);
- ack_worker_stopped: ack mode, 10 tasks, lab3's worker stopped with #8 in hand (redelivered to lab2);
- noack_one_task: one task, three workers (one of them stopped): two received nothing.
The other cases (an unreachable host, a run in progress, a missing record) are made from these.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workqueue.report import fates
from workqueue.report.gathered import read_folder
from workqueue.report.live import SILENT_SECONDS, LiveState
from workqueue.report.timeline import render as render_timeline

RECORDINGS = Path(__file__).parent / "recordings"
NOACK_RUN, ACK_RUN, ONE_RUN = "20261127-020228-1304", "20261127-015930-1e6e", "20261127-020312-2ba9"


def report_of(folder: Path, run_id: str | None = None) -> fates.RunReport:
    gathered = read_folder(folder)
    return fates.build(gathered, run_id or fates.last_run(gathered) or "")


def started_of(folder: Path) -> float:
    """When the recorded run began, as its report says (a recording always has it)."""
    started = report_of(folder).started
    assert started is not None
    return started


def copy_of(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(RECORDINGS / name, tmp_path / name))


def test_noack_round_robin_gives_each_worker_every_third_task() -> None:
    report = report_of(RECORDINGS / "noack_worker_stopped")
    received = {w.worker: w.received for w in report.workers}
    assert received == {"lab2/worker-1": [3, 6, 9], "lab3/worker-1": [1, 4, 7, 10], "lab4/worker-1": [2, 5, 8]}
    assert all(len(task.attempts) == 1 for task in report.tasks)


def test_noack_stopped_worker_loses_what_it_had_not_finished() -> None:
    report = report_of(RECORDINGS / "noack_worker_stopped")
    never_done = [t.seq for t in report.tasks if not t.done_by]
    assert report.seqs(fates.LOST) == never_done == [10]
    assert {t.dispatched_to for t in report.tasks if t.fate == fates.LOST} == {"lab3/worker-1"}
    stopped = next(w for w in report.workers if w.worker == "lab3/worker-1")
    assert stopped.running is False and stopped.stopped_at is not None
    assert report.verdict == (
        f"10 sent, 9 done, 1 lost (#10: dispatched to lab3/worker-1, stopped at {fates.clock(stopped.stopped_at)})"
    )
    assert report.settled and report.missing == []


def test_ack_stopped_worker_loses_nothing_and_the_redelivered_task_is_named() -> None:
    report = report_of(RECORDINGS / "ack_worker_stopped")
    assert report.count(fates.DONE) == 10 and report.count(fates.LOST) == 0
    (again,) = report.redelivered
    assert again.seq == 8
    assert [a.worker for a in again.attempts] == ["lab3/worker-1", "lab2/worker-1"]
    assert [a.outcome for a in again.attempts] == [fates.REQUEUED, fates.DONE]
    assert again.attempts[1].redelivered
    assert report.verdict == "10 sent, 10 done, 0 lost; 1 redelivered (#8 lab3/worker-1 -> lab2/worker-1)"
    lab2 = next(w for w in report.workers if w.worker == "lab2/worker-1")
    assert lab2.redelivered == [8]
    assert report.queue_state is not None and (report.queue_state.ready, report.queue_state.unacknowledged) == (0, 0)


def test_a_worker_that_received_nothing_is_listed_with_nothing() -> None:
    report = report_of(RECORDINGS / "noack_one_task")
    assert report.run_id == ONE_RUN
    counts = {w.worker: (len(w.received), len(w.done)) for w in report.workers}
    assert sorted(counts.values()) == [(0, 0), (0, 0), (1, 1)]
    assert report.verdict == "1 sent, 1 done, 0 lost"


def test_an_unreachable_host_makes_its_tasks_unknown_not_lost(tmp_path: Path) -> None:
    folder = copy_of("noack_worker_stopped", tmp_path)
    (folder / "workers" / "lab3.json").write_text(
        json.dumps(
            {"host": "lab3", "unreachable": True, "error": "Failed to connect to the host via ssh: No route to host"}
        )
    )
    report = report_of(folder)
    assert report.seqs(fates.UNKNOWN) == [1, 4, 7, 10]  # lab3's share: nobody else saw them
    assert report.count(fates.LOST) == 0 and report.count(fates.DONE) == 6
    assert any(s.startswith("lab3: unreachable (Failed to connect") for s in report.missing)
    assert "4 unknown (#1, #4, #7, #10)" in report.verdict


def test_a_run_in_progress_says_so_and_counts_nothing_as_lost(tmp_path: Path) -> None:
    folder = copy_of("ack_worker_stopped", tmp_path)
    lab4 = folder / "workers" / "lab4.json"
    document = json.loads(lab4.read_text())
    lines = document["logs"][0]["stderr"].splitlines()
    last_done = max(i for i, line in enumerate(lines) if '"event":"done"' in line)
    document["logs"][0]["stderr"] = "\n".join(lines[:last_done])  # #9 still in hand
    lab4.write_text(json.dumps(document))
    report = report_of(folder)
    assert report.seqs(fates.IN_PROGRESS) == [9]
    assert not report.settled
    assert report.verdict.endswith("still running: 1 in progress (report again when it settles)")


def test_a_missing_producer_record_is_stated_and_counts_what_the_workers_saw(tmp_path: Path) -> None:
    folder = copy_of("ack_worker_stopped", tmp_path)
    (folder / "producer" / "lab5.json").write_text(json.dumps({"host": "lab5", "record": ""}))
    report = report_of(folder)
    assert report.run_id == ACK_RUN and report.sent is None
    assert report.verdict.startswith("10 seen (number sent unknown), 10 done, 0 lost")
    assert any("no producer record of run" in s for s in report.missing)


def test_containers_made_after_the_run_leave_its_tasks_unknown(tmp_path: Path) -> None:
    # ack_worker_stopped was recorded after a noack run, 20261127-015838-d6a1: the workers were
    # recreated in between (created at 1795744760), and that run's events went with the old ones.
    folder = copy_of("ack_worker_stopped", tmp_path)
    earlier = "20261127-015838-d6a1"
    record = [
        {
            "event": "run_started",
            "ts": 1795744718.0,
            "program": "producer",
            "run_id": earlier,
            "count": 6,
            "mode": "noack",
            "queue": "hello",
        },
        {
            "event": "run_finished",
            "ts": 1795744718.1,
            "program": "producer",
            "run_id": earlier,
            "sent": 6,
            "confirmed": None,
            "unconfirmed": [],
        },
    ]
    content = base64.b64encode("\n".join(json.dumps(e) for e in record).encode()).decode()
    (folder / "producer" / "lab5.json").write_text(json.dumps({"host": "lab5", "record": content}))
    report = report_of(folder, earlier)
    assert (report.sent, len(report.tasks)) == (6, 6)
    assert report.count(fates.UNKNOWN) == 6 and report.count(fates.LOST) == 0
    assert report.verdict.startswith("6 sent, 0 done, 0 lost; 6 unknown (#1-#6)")
    assert any("was created at" in s and "after the run began" in s for s in report.missing)


def test_the_timeline_is_a_valid_svg_with_a_bar_per_delivery_and_the_stop_marked() -> None:
    report = report_of(RECORDINGS / "ack_worker_stopped")
    root = ET.fromstring(render_timeline(report, now=0.0))
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and float(root.get("width", 0)) > 0
    ns = {"s": "http://www.w3.org/2000/svg"}
    tips = [t.text or "" for t in root.iterfind(".//s:rect/s:title", ns)]
    assert len(tips) == 11  # ten tasks, #8 twice
    assert any(t.startswith("#8 requeued") for t in tips)
    texts = [t.text or "" for t in root.iterfind(".//s:text", ns)]
    assert any(t.startswith("docker stop ") for t in texts)
    assert "#8 again" in texts and "#8 requeued" in texts
    assert root.find(".//s:path[@marker-end]", ns) is not None  # the arrow from lab3 to lab2


def test_the_command_writes_the_three_files(tmp_path: Path) -> None:
    done = _report_command(RECORDINGS / "noack_worker_stopped", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "=> 10 sent, 9 done, 1 lost (#10: dispatched to lab3/worker-1" in done.stdout
    folder = tmp_path / NOACK_RUN
    data = json.loads((folder / "report.json").read_text())
    assert data["counts"] == {"done": 9, "lost": 1}
    assert [t["seq"] for t in data["tasks"] if t["fate"] == "lost"] == [10]
    assert "| #10 | lost | - | 1 | dispatched to lab3/worker-1" in (folder / "report.md").read_text()
    ET.parse(folder / "timeline.svg")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--run", "yesterday"], 2, "--run: 'yesterday' is not a run id like"),
        (["--run", "20260101-000000-abcd"], 1, "run 20260101-000000-abcd is not in the events"),
    ],
)
def test_bad_runs_get_one_line(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    done = _report_command(RECORDINGS / "noack_worker_stopped", "--out", str(tmp_path), *args)
    assert done.returncode == code
    assert message in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_nothing_deployed_is_one_line_that_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "pc2.json").write_text(json.dumps({"host": "pc2", "containers": [], "logs": []}))
    done = _report_command(tmp_path, "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "no run is in the events" in done.stderr and "pc2: no worker container" in done.stderr


def _passed(folder: Path) -> str:
    """A gathered folder as report.yml passes it to the report: {kind: [document, ...]} on standard input."""
    return json.dumps(
        {kind.name: [json.loads(f.read_text()) for f in sorted(kind.glob("*.json"))] for kind in folder.iterdir()}
    )


def test_the_report_keeps_what_report_yml_passed_in_its_folder_replacing_what_was_there(tmp_path: Path) -> None:
    gathered = tmp_path / "gathered"
    (gathered / "workers").mkdir(parents=True)
    (gathered / "workers" / "old-host.json").write_text("{}")  # an earlier report's, of a host gone since
    command = [sys.executable, "-m", "workqueue.report", str(gathered), "--keep", "--out", str(tmp_path / "out")]
    passed = _passed(RECORDINGS / "ack_worker_stopped")
    done = subprocess.run(command, input=passed, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    kept = sorted(str(f.relative_to(gathered)) for f in gathered.rglob("*.json"))
    assert kept == sorted(
        str(f.relative_to(RECORDINGS / "ack_worker_stopped"))
        for f in (RECORDINGS / "ack_worker_stopped").rglob("*.json")
    )
    assert all(f.stat().st_mode & 0o077 == 0 for f in gathered.rglob("*.json"))
    assert report_of(gathered).verdict == report_of(RECORDINGS / "ack_worker_stopped").verdict
    assert json.loads((tmp_path / "out" / ACK_RUN / "report.json").read_text())["run_id"] == ACK_RUN


@pytest.mark.parametrize(
    ("passed", "message"),
    [
        ("not json", "what report.yml passed is not JSON"),
        ('{"workers": {}}', "is not its lists of workers, producer and broker"),
        ('{"workers": [{"host": "../../etc"}]}', "a workers host named '../../etc' cannot name a file"),
        ('{"broker": [{"host": ""}]}', "a broker host named '' cannot name a file"),
    ],
)
def test_what_report_yml_passed_wrong_is_one_line_and_writes_nowhere_else(
    tmp_path: Path, passed: str, message: str
) -> None:
    command = [sys.executable, "-m", "workqueue.report", str(tmp_path / "gathered"), "--keep", "--out", str(tmp_path)]
    done = subprocess.run(command, input=passed, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert message in done.stderr, done.stderr
    assert {f.name for f in tmp_path.rglob("*") if f.is_file()} == set()


def test_live_state_follows_each_workers_task_in_hand() -> None:
    gathered = read_folder(RECORDINGS / "noack_worker_stopped")
    events = sorted((e for c in gathered.containers for e in c.events), key=lambda e: e["ts"])
    first = min(e["ts"] for e in events if e.get("run_id") == NOACK_RUN)
    state = LiveState()
    for event in (e for e in events if e["ts"] <= first + 1.0):
        state.apply(event)
    assert state.run_id == NOACK_RUN
    assert state.workers["lab3/worker-1"].in_hand() == "#4 (+2 waiting)"  # #1 done after 0.5 s
    for event in (e for e in events if e["ts"] > first + 1.0):
        state.apply(event)
    lab3 = state.workers["lab3/worker-1"]
    assert (lab3.state, lab3.in_hand(), lab3.received, lab3.done, lab3.abandoned) == ("stopped", "-", 4, 3, 1)


def _report_command(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "workqueue.report", str(folder), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _with_foreign_tasks(tmp_path: Path) -> Path:
    """The ack recording, with tasks from another producer done by lab2: two during the run, one before it."""
    folder = copy_of("ack_worker_stopped", tmp_path)
    lab2 = folder / "workers" / "lab2.json"
    document = json.loads(lab2.read_text())
    start = report_of(folder).started
    assert start is not None

    def event(kind: str, ts: float, **fields: object) -> str:
        base = {"event": kind, "ts": ts, "program": "worker", "host": "lab2", "worker": "worker-1"}
        return json.dumps(base | {"run_id": None, "seq": None, "message_id": None} | fields)

    foreign = [
        event("received", start - 30, redelivered=False, origin="another producer: 'before the run'"),
        event("done", start - 29),
        event("received", start + 0.1, redelivered=False, origin="another producer: 'a \"quoted\" \\ é'"),
        event("done", start + 0.2),
        event("received", start + 0.3, redelivered=False, origin="pc7: 'Hello World! ...'"),
        event("done", start + 0.4),
    ]
    lines = document["logs"][0]["stderr"].splitlines()
    document["logs"][0]["stderr"] = "\n".join(sorted(lines + foreign, key=lambda line: json.loads(line)["ts"]))
    lab2.write_text(json.dumps(document))
    return folder


def test_tasks_from_other_producers_are_counted_apart_from_the_run(tmp_path: Path) -> None:
    report = report_of(_with_foreign_tasks(tmp_path))
    assert report.run_id == ACK_RUN
    assert [t.origin for t in report.foreign] == ["another producer: 'a \"quoted\" \\ é'", "pc7: 'Hello World! ...'"]
    assert {t.outcome for t in report.foreign} == {"done"} and {t.worker for t in report.foreign} == {"lab2/worker-1"}
    # The run's own fates are untouched: nothing of the foreign tasks is lost, unknown or unaccounted.
    assert len(report.tasks) == 10 and report.count(fates.DONE) == 10
    assert report.verdict.startswith("10 sent, 10 done, 0 lost; 1 redelivered (")
    assert report.verdict.endswith("; 2 tasks from other producers, done by lab2/worker-1 (2)")


def test_the_files_list_foreign_tasks_with_their_text_escaped(tmp_path: Path) -> None:
    folder = _with_foreign_tasks(tmp_path)
    done = _report_command(folder, "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "Tasks from other producers (not part of the run):" in done.stdout
    data = json.loads((tmp_path / "out" / ACK_RUN / "report.json").read_text())
    assert data["foreign"][0]["origin"] == "another producer: 'a \"quoted\" \\ é'"
    assert "## Tasks from other producers" in (tmp_path / "out" / ACK_RUN / "report.md").read_text()


def test_live_state_counts_foreign_tasks_apart() -> None:
    state = LiveState()
    common = {"host": "pc1", "worker": "worker-1", "ts": 1.0}
    state.apply({"event": "received", "run_id": "r", "seq": 1, **common})
    state.apply({"event": "received", "run_id": None, "seq": None, **common})
    assert state.workers["pc1/worker-1"].in_hand() == "#1 (+1 waiting)"
    state.apply({"event": "done", "run_id": "r", "seq": 1, **common})
    assert state.workers["pc1/worker-1"].in_hand() == "other"
    state.apply({"event": "done", "run_id": None, "seq": None, **common})
    worker = state.workers["pc1/worker-1"]
    assert (worker.received, worker.done, worker.in_hand()) == (1, 1, "-")
    assert state.foreign_line() == "other producers: 1 tasks received, done by pc1/worker-1 (1)"


def _without_tasks(tmp_path: Path, seqs: set[int], ready: int, rejected: set[int] | None = None) -> Path:
    """The ack recording as if no worker had seen some tasks, the broker holding ``ready``; some rejected."""
    folder = copy_of("ack_worker_stopped", tmp_path)
    for path in (folder / "workers").glob("*.json"):
        document = json.loads(path.read_text())
        for log in document["logs"]:
            kept = [line for line in log["stderr"].splitlines() if json.loads(line).get("seq") not in seqs]
            log["stderr"] = "\n".join(kept)
        path.write_text(json.dumps(document))
    lab2 = folder / "workers" / "lab2.json"
    document = json.loads(lab2.read_text())
    for seq in sorted(rejected or ()):
        event = {
            "event": "rejected",
            "ts": started_of(folder) + 1,
            "host": "lab2",
            "worker": "worker-1",
            "run_id": ACK_RUN,
            "seq": seq,
            "message_id": f"{ACK_RUN}.{seq}",
            "reason": "empty",
        }
        document["logs"][0]["stderr"] += "\n" + json.dumps(event)
    lab2.write_text(json.dumps(document))
    broker = folder / "broker" / "lab1.json"
    document = json.loads(broker.read_text())
    document["stdout"] = json.dumps(
        [{"name": "task_queue", "messages_ready": ready, "messages_unacknowledged": 0, "consumers": 2}]
    )
    broker.write_text(json.dumps(document))
    return folder


def test_tasks_the_broker_still_holds_are_queued_not_lost(tmp_path: Path) -> None:
    report = report_of(_without_tasks(tmp_path, {9, 10}, ready=2))
    assert report.seqs(fates.QUEUED) == [9, 10] and report.count(fates.LOST) == 0
    assert not report.settled and report.verdict.endswith("still running: 2 queued (report again when it settles)")


def test_tasks_seen_nowhere_are_unaccounted_and_said_so(tmp_path: Path) -> None:
    report = report_of(_without_tasks(tmp_path, {9, 10}, ready=0))
    assert report.seqs(fates.UNACCOUNTED) == [9, 10] and report.count(fates.LOST) == 0
    assert "; 2 unaccounted (#9-#10)" in report.verdict
    assert any("seen by no worker and not in the queue" in s for s in report.missing)


def test_a_rejected_task_is_named_with_where_it_went(tmp_path: Path) -> None:
    report = report_of(_without_tasks(tmp_path, {10}, ready=0, rejected={10}))
    (task,) = [t for t in report.tasks if t.seq == 10]
    assert task.fate == fates.REJECTED and task.note.endswith("moved to the dead-letter queue")
    assert "; 1 rejected (#10)" in report.verdict


def test_live_state_calls_a_worker_silent_when_it_stops_speaking() -> None:
    state = LiveState()
    state.apply({"event": "alive", "host": "pc1", "worker": "worker-1", "ts": 100.0, "mode": "ack"})
    assert state.rows(now=110.0)[0][1] == "consuming"
    assert state.rows(now=100.0 + SILENT_SECONDS + 5)[0][1] == f"silent for {SILENT_SECONDS + 5:.0f} s"
    # A worker whose clock is 40 s behind, heard at 200 by the view's: speaking, not silent for 40 s.
    state.apply_all([{"event": "alive", "host": "pc2", "worker": "worker-1", "ts": 160.0, "mode": "ack"}], 200.0)
    assert state.rows(now=201.0)[1][1] == "consuming"
    assert state.rows(now=200.0 + SILENT_SECONDS + 1)[1][1] == f"silent for {SILENT_SECONDS + 1:.0f} s"


def _edit_events(path: Path, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    document = json.loads(path.read_text())
    events = [json.loads(line) for line in document["logs"][0]["stderr"].splitlines()]
    document["logs"][0]["stderr"] = "\n".join(json.dumps(e) for e in edit(events))
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("connection_lost_first", [False, True])
def test_a_task_a_frozen_worker_finished_late_is_done_twice_not_lost(
    tmp_path: Path, connection_lost_first: bool
) -> None:
    # As if lab3 had frozen with #8 in hand, instead of stopping: the broker gave #8 to lab2,
    # and lab3, thawed, finished it too; its acknowledgement was refused. Its two threads race on
    # the thaw: the I/O thread may say connection_lost before the work thread's late done (CI saw it).
    folder = copy_of("ack_worker_stopped", tmp_path)

    def frozen(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [e for e in events if e["event"] not in ("abandoned", "worker_stopped")]
        late = {
            "event": "done",
            "ts": 1795744790.0,
            "program": "worker",
            "host": "lab3",
            "worker": "worker-1",
            "run_id": ACK_RUN,
            "seq": 8,
            "message_id": f"{ACK_RUN}.8",
            "work_seconds": 4.0,
            "late": 16.0,
            "refused": True,
        }
        lost = {k: late[k] for k in ("program", "host", "worker")} | {"event": "connection_lost", "ts": 1795744789.0}
        return [*kept, *([lost] if connection_lost_first else []), late]

    _edit_events(folder / "workers" / "lab3.json", frozen)
    report = report_of(folder)
    assert report.count(fates.LOST) == 0 and report.count(fates.DONE) == 10
    (twice,) = report.done_twice
    assert twice.seq == 8 and twice.done_by == ["lab3/worker-1", "lab2/worker-1"]
    assert twice.note == "done 2 times: lab3/worker-1 (late: acknowledgement refused), lab2/worker-1"
    assert report.verdict.endswith("; 1 redelivered (#8 lab3/worker-1 -> lab2/worker-1); 1 done twice (#8)")
    lab3 = next(w for w in report.workers if w.worker == "lab3/worker-1")
    assert 8 not in lab3.done and 8 not in lab3.not_finished, "its work was done, its acknowledgement refused"
    picture = ET.fromstring(render_timeline(report, 1795744800.0))
    assert any("ack refused" in (t.text or "") for t in picture.iter("{http://www.w3.org/2000/svg}text"))


def test_noack_tasks_waiting_in_the_queue_are_lost_with_the_broker(tmp_path: Path) -> None:
    # As if the broker had restarted while #9 and #10 waited in the transient queue 'hello'.
    folder = copy_of("noack_worker_stopped", tmp_path)
    went = started_of(folder) + 2

    def broker_restarted(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [e for e in events if e.get("seq") not in (9, 10) and e["event"] != "worker_stopped"]
        kept = [e for e in kept if e["event"] != "abandoned"]
        host, worker = kept[0]["host"], kept[0]["worker"]
        lost = {"event": "connection_lost", "ts": went, "host": host, "worker": worker, "reason": "broker restarted"}
        return sorted([*kept, lost], key=lambda e: e["ts"])

    for path in (folder / "workers").glob("*.json"):
        _edit_events(path, broker_restarted)
    report = report_of(folder)
    lost = [t for t in report.tasks if t.fate == fates.LOST]
    assert [t.seq for t in lost if t.dispatched_to is None] == [9, 10]
    assert all(t.note.startswith("lost with the broker at ") for t in lost if t.dispatched_to is None)
    assert f"#9-#10: lost with the broker at {fates.clock(went)}" in report.verdict


@pytest.mark.parametrize(("recording", "lost"), [("noack_worker_stopped", [10]), ("ack_worker_stopped", [])])
def test_a_killed_worker_that_said_nothing_is_read_as_a_stopped_one(
    tmp_path: Path, recording: str, lost: list[Any]
) -> None:
    folder = copy_of(recording, tmp_path)
    before = report_of(folder)
    # SIGKILL: no 'abandoned', no 'worker_stopped'; the container is not running.
    _edit_events(
        folder / "workers" / "lab3.json",
        lambda es: [e for e in es if e["event"] not in ("abandoned", "worker_stopped")],
    )
    report = report_of(folder)
    assert report.seqs(fates.LOST) == lost and report.settled
    assert [t.fate for t in report.tasks] == [t.fate for t in before.tasks]
    assert report.verdict.split(" (")[0] == before.verdict.split(" (")[0]


def test_a_drills_fault_is_listed_and_drawn_as_a_band_on_the_lanes_it_touched(tmp_path: Path) -> None:
    folder = copy_of("ack_worker_stopped", tmp_path)
    start = started_of(folder) + 2
    faults = [
        {"event": "fault", "fault": "freeze", "host": "lab3", "worker": "worker-1", "start": start, "end": start + 40},
        {
            "event": "fault",
            "fault": "kill",
            "host": "lab2",
            "worker": "worker-1",
            "start": start - 3600,
            "end": start - 3600,
        },  # long before the run: not its fault
    ]
    producer = folder / "producer" / "lab5.json"
    document = json.loads(producer.read_text())
    document["faults"] = base64.b64encode("\n".join(json.dumps(f) for f in faults).encode()).decode()
    producer.write_text(json.dumps(document))
    report = report_of(folder)
    assert [(f.fault, f.host, f.end - f.start) for f in report.faults] == [("freeze", "lab3", 40)]
    done = _report_command(folder, "--out", str(tmp_path / "out"))
    assert f"fault: freeze on lab3/worker-1, {fates.clock(start)} to {fates.clock(start + 40)} (40 s)" in done.stdout
    picture = ET.parse(tmp_path / "out" / ACK_RUN / "timeline.svg").getroot()
    bands = [r for r in picture.iter("{http://www.w3.org/2000/svg}rect") if r.get("fill-opacity") == "0.18"]
    assert len(bands) == 1, "one band, on lab3's lane only"
    assert any((t.text or "") == "freeze 40 s" for t in picture.iter("{http://www.w3.org/2000/svg}text"))


def test_a_lossy_links_record_names_its_loss_and_a_forged_loss_is_left_out(tmp_path: Path) -> None:
    folder = copy_of("ack_worker_stopped", tmp_path)
    start = started_of(folder) + 2

    def lossy(host: str, offset: float) -> dict[str, Any]:
        at = start + offset
        return {"event": "fault", "fault": "lossy", "host": host, "worker": "worker-1", "start": at, "end": at + 30}

    faults = [lossy("lab3", 0) | {"loss": "30"}, lossy("lab2", 1)]  # Ansible writes a number as text
    faults += [lossy("lab2", 2 + i) | {"loss": bad} for i, bad in enumerate([0, 250, "x", True, [5], None])]
    producer = folder / "producer" / "lab5.json"
    document = json.loads(producer.read_text())
    document["faults"] = base64.b64encode("\n".join(json.dumps(f) for f in faults).encode()).decode()
    producer.write_text(json.dumps(document))
    report = report_of(folder)
    assert [(f.kind, f.host) for f in report.faults] == [("lossy 30%", "lab3")] + [("lossy", "lab2")] * 7
    done = _report_command(folder, "--out", str(tmp_path / "out"))
    assert f"fault: lossy 30% on lab3/worker-1, {fates.clock(start)} to {fates.clock(start + 30)} (30 s)" in done.stdout
    picture = ET.parse(tmp_path / "out" / ACK_RUN / "timeline.svg").getroot()
    assert any((t.text or "") == "lossy 30% 30 s" for t in picture.iter("{http://www.w3.org/2000/svg}text"))


def test_a_partitions_record_tells_what_each_node_did_and_a_forged_one_tells_nothing(tmp_path: Path) -> None:
    folder = copy_of("ack_worker_stopped", tmp_path)
    start = started_of(folder) + 2
    cut = {"node": "rabbit@lab1", "paused_after": "52.3", "served_again_after": 4.0}  # Ansible writes either
    leaders = {"leader_before": "rabbit@lab1", "leader_after": "rabbit@lab2"}
    alone = [{"node": f"rabbit@lab{i}", "paused_after": 50.0 + i, "served_again_after": 3} for i in (1, 2, 3)]
    never = {"node": "rabbit@lab2", "paused_after": None, "served_again_after": 0.5}
    hung = {"node": "rabbit@lab3", "paused_after": 18, "served_again_after": 101.2, "restarted": True}
    forged = {"nodes": [{"node": "rabbit@lab3\x1b[2J", "paused_after": True, "served_again_after": -4}, "x", 5]}
    partitions = [
        ("lab1", {"nodes": [cut]} | leaders),
        ("each", {"nodes": alone} | leaders | {"leader_after": "rabbit@lab1"}),
        ("lab2", {"nodes": [never]} | leaders),
        ("lab3", forged),
        ("lab3", {"nodes": "all of them"}),
        ("lab3", {"nodes": [hung]} | leaders),
    ]
    faults = [
        {
            "event": "fault",
            "fault": "partition",
            "host": host,
            "worker": None,
            "start": start + i,
            "end": start + i + 90,
        }
        | {"partition": told}
        for i, (host, told) in enumerate(partitions)
    ]
    producer = folder / "producer" / "lab5.json"
    document = json.loads(producer.read_text())
    document["faults"] = base64.b64encode("\n".join(json.dumps(f) for f in faults).encode()).decode()
    producer.write_text(json.dumps(document))
    report = report_of(folder)
    assert [f.partition is not None for f in report.faults] == [True, True, True, True, False, True]
    done = _report_command(folder, "--out", str(tmp_path / "out"))
    said = [line for line in done.stdout.splitlines() if line.startswith("fault: partition")]
    assert said[0] == (
        f"fault: partition on broker node lab1, from the others, {fates.clock(start)} to {fates.clock(start + 90)}"
        " (90 s): rabbit@lab1 paused 52 s after the cut (pause_minority) and served again 4 s after the heal;"
        " task_queue led by rabbit@lab1 before, by rabbit@lab2 after"
    )
    assert said[1].startswith("fault: partition on every broker node, each alone, ")
    assert said[1].count("s after the cut (pause_minority) and served again 3 s after the heal") == 3
    assert said[1].endswith("task_queue led by rabbit@lab1 before and after")
    assert "rabbit@lab2 did not pause and served throughout" in said[2]
    # A forged record: its node's escape sequence made harmless, its numbers dropped, never a crash.
    assert "rabbit@lab3?[2J did not pause and did not serve again after the heal;" in said[3]
    assert said[3].endswith("task_queue led by ? before and after")
    assert said[4].endswith("(90 s)")
    assert (
        "rabbit@lab3 paused 18 s after the cut (pause_minority) and served again 101 s after the heal (it hung"
        in said[5]
    )


def _skewed(folder: Path, path: str, shift: float) -> None:
    """A worker host whose events were stamped ``shift`` seconds off (its Docker's time stamps too)."""
    _edit_events(folder / path, lambda events: [e | {"ts": e["ts"] + shift} for e in events])
    document = json.loads((folder / path).read_text())
    document["containers"][0]["Created"] += shift
    (folder / path).write_text(json.dumps(document))


def _measured(folder: Path, path: str, clock: dict[str, Any], clocks: list[dict[str, Any]] | None = None) -> None:
    """The clocks report.yml measured there: the host's (``clock``), each running worker's (``clocks``)."""
    document = json.loads((folder / path).read_text())
    document.update(clock=clock, clocks=clocks or [])
    (folder / path).write_text(json.dumps(document))


def test_events_of_a_clock_40_s_off_are_placed_on_this_machines_clock(tmp_path: Path) -> None:
    """lab2's worker took #8 after lab3's was stopped; with lab2 40 s behind and lab4's worker 3 s ahead."""
    truth = report_of(copy_of("ack_worker_stopped", tmp_path / "as-recorded"))
    folder = copy_of("ack_worker_stopped", tmp_path)
    _skewed(folder, "workers/lab2.json", -40.0)
    _skewed(folder, "workers/lab4.json", 3.0)
    wrong = report_of(folder)  # read as each clock stamped it, the clocks not measured
    assert wrong.started is not None
    assert any(a.received < wrong.started for a in wrong.tasks[7].attempts), "lab2 took #8 before the run began"
    _measured(folder, "workers/lab2.json", {"offset": -40.0, "uncertainty": 0.02})
    worker = {"container": "workqueue-worker-1", "offset": 3.0, "uncertainty": 0.03}
    _measured(folder, "workers/lab4.json", {"offset": 0.001, "uncertainty": 0.02}, [worker])
    report = report_of(folder)

    def times(r: fates.RunReport) -> list[tuple[Any, ...]]:
        return [(t.seq, a.worker, round(a.received, 3), round(a.ended or 0, 3)) for t in r.tasks for a in t.attempts]

    assert times(report) == times(truth) and report.verdict == truth.verdict
    started = report.started
    assert started is not None
    for task in report.tasks:  # sent, received, done: in that order, on one clock
        assert all(started <= a.received <= (a.ended or a.received) for a in task.attempts)
        assert [a.received for a in task.attempts] == sorted(a.received for a in task.attempts)
    done = _report_command(folder, "--out", str(tmp_path / "out"))
    said = [line for line in done.stdout.splitlines() if line.startswith("clock: ")]
    assert said == [
        "clock: lab2 is 40.0 s behind this machine (±0.02 s): its events are placed on this machine's clock",
        "clock: lab4/worker-1 is 3.0 s ahead of this machine (±0.03 s): its events are placed on this machine's clock",
    ]
    data = json.loads((tmp_path / "out" / ACK_RUN / "report.json").read_text())
    assert {c["of"]: c["offset"] for c in data["clocks"]} == {"lab2": -40.0, "lab4": 0.001, "lab4/worker-1": 3.0}


def test_a_clock_that_could_not_be_read_is_said_and_one_within_its_reading_is_left_alone(tmp_path: Path) -> None:
    truth = report_of(copy_of("ack_worker_stopped", tmp_path / "as-recorded"))
    folder = copy_of("ack_worker_stopped", tmp_path)
    # lab2's clock reads 0.015 s off within 0.02 s: the same clock as this machine's, nothing moves.
    _measured(folder, "workers/lab2.json", {"offset": 0.015, "uncertainty": 0.02})
    _measured(folder, "workers/lab4.json", {"failed": True, "msg": "python3: not found\nmore"})
    report = report_of(folder)
    assert [a.received for t in report.tasks for a in t.attempts] == [
        a.received for t in truth.tasks for a in t.attempts
    ]
    assert "lab4: its clock could not be read (python3: not found); its events keep their own times" in report.missing
    assert not any("lab2" in line for line in report.missing)


def test_the_live_view_names_each_workers_broker_node_with_a_cluster() -> None:
    state = LiveState()
    state.apply({"event": "consuming", "ts": 1.0, "host": "lab4", "worker": "worker-1", "node": "10.0.0.11:5672"})
    assert not state.nodes_column  # one node: nothing to tell apart
    state.apply({"event": "consuming", "ts": 2.0, "host": "lab5", "worker": "worker-1", "node": "10.0.0.12:5672"})
    assert state.nodes_column
    assert [row[-1] for row in state.rows(3.0)] == ["10.0.0.11:5672", "10.0.0.12:5672"]


def test_the_report_names_each_workers_broker_node_before_and_after_its_node_went() -> None:
    from workqueue.report import tables
    from workqueue.report.gathered import Container, Gathered

    run, start = "20261128-120000-abcd", 100.0
    producer = [{"event": "run_started", "ts": start, "run_id": run, "count": 2, "mode": "ack", "queue": "task_queue"}]
    a = [
        {"event": "consuming", "ts": 90.0, "node": "10.0.0.11:5672"},
        {"event": "received", "ts": 101.0, "run_id": run, "seq": 1},
        {"event": "connection_lost", "ts": 102.0},
        {"event": "consuming", "ts": 104.0, "node": "10.0.0.12:5672"},
        {"event": "received", "ts": 104.5, "run_id": run, "seq": 1, "redelivered": True},
        {"event": "done", "ts": 105.0, "run_id": run, "seq": 1},
    ]
    b = [
        {"event": "consuming", "ts": 80.0, "node": "10.0.0.11:5672"},
        {"event": "consuming", "ts": 95.0, "node": "10.0.0.13:5672"},  # before the run: only its last counts
        {"event": "received", "ts": 101.0, "run_id": run, "seq": 2},
        {"event": "done", "ts": 102.0, "run_id": run, "seq": 2},
    ]
    gathered = Gathered(
        containers=[
            Container("lab4", "workqueue-worker-1", True, "Up", a),
            Container("lab5", "workqueue-worker-1", True, "Up", b),
        ],
        producer_events=producer,
        queues=[],
    )
    report = fates.build(gathered, run)
    assert [w.nodes for w in report.workers] == [["10.0.0.11:5672", "10.0.0.12:5672"], ["10.0.0.13:5672"]]
    assert tables.worker_header(report)[-1] == "broker node"
    assert [row[-1] for row in tables.worker_rows(report)] == ["10.0.0.11:5672 -> 10.0.0.12:5672", "10.0.0.13:5672"]
    assert report.count(fates.DONE) == 2 and report.count(fates.LOST) == 0


def test_the_report_says_what_the_dead_letter_queue_holds_in_ack_mode() -> None:
    from workqueue.report import tables
    from workqueue.report.gathered import Gathered, QueueState

    run = "20261128-120000-abcd"
    producer = [{"event": "run_started", "ts": 1.0, "run_id": run, "count": 0, "mode": "ack", "queue": "task_queue"}]
    queues = [QueueState("task_queue", 0, 0, 2, "rabbit@lab2"), QueueState("task_queue.rejected", 2, 0, 0)]
    report = fates.build(Gathered(producer_events=producer, queues=queues), run)
    assert report.dead_lettered == 2
    assert tables.broker_line(report).endswith(
        "2 consumers, led by rabbit@lab2; 2 in 'task_queue.rejected' (refused, or redelivered past the delivery limit)"
    )
    empty = fates.build(Gathered(producer_events=producer, queues=queues[:1]), run)
    assert empty.dead_lettered == 0 and "rejected" not in tables.broker_line(empty)


def test_tasks_waiting_in_a_deleted_task_queue_are_lost_with_it(tmp_path: Path) -> None:
    # As if a student had deleted task_queue while #9 and #10 waited in it: the broker cancelled both
    # workers' consumers (each says so), and the queue they declared again is empty.
    folder = _without_tasks(tmp_path, {9, 10}, ready=0)
    deleted = started_of(folder) + 2
    for path in (folder / "workers").glob("*.json"):

        def cancelled(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            host, worker = events[0]["host"], events[0]["worker"]
            said = {"event": "consumer_cancelled", "ts": deleted + 0.01, "host": host, "worker": worker}
            return sorted([*events, {**said, "queue": "task_queue"}], key=lambda e: e["ts"])

        _edit_events(path, cancelled)
    report = report_of(folder)
    assert report.went.queue_deleted == pytest.approx(deleted + 0.01)
    lost = [t for t in report.tasks if t.fate == fates.LOST]
    assert [t.seq for t in lost] == [9, 10] and report.count(fates.UNACCOUNTED) == 0
    assert f"2 lost (#9-#10: lost with task_queue, deleted at {fates.clock(deleted + 0.01)})" in report.verdict
    assert not any("seen by no worker and not in the queue" in s for s in report.missing)
