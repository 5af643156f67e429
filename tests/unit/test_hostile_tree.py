"""
Hostile trees (#11): a symlink, a directory, a FIFO or garbage planted at any path
the layout names, in a root that holds jobs in every state. fsck, a worker, ls,
stats and prune then run against it, and must:

* read and write nothing outside the root (symlinks point at canaries outside
  that look like valid fsjobs files; their marker text must never come back);
* not crash: every operation succeeds or raises an fsjobs error (one clear line);
* not spin: the worker's `run_until_empty` ends (a generous guard, not a timing);
* report the damage by name: fsck names the planted path (or the folder it
  broke).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pathlib
import shutil
import subprocess
import tempfile
import typing
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fsjobs
from fsjobs import JobStatus, _flow, _slots, _stats, journal
from fsjobs._queue_settings import UNSET, parse_rate
from fsjobs.fsck import fsck
from fsjobs.store import Ending, Outcome, Store

FUNC = "tests.unit.test_hostile_tree.task"
CANARY = "OUTSIDE-THE-ROOT"
HANG_GUARD = 60.0
KINDS = ("symlink", "directory", "fifo", "garbage")


def task(**kwargs: object) -> str:
    return "ran"


def _template(base: pathlib.Path) -> tuple[pathlib.Path, list[str]]:
    """A root with jobs in every state; returns it and every path its layout names."""
    root = base / "template"
    store = Store(root, staleness=0)
    job = fsjobs.Job(func=FUNC)
    (pending,) = store.push_many([(job.with_kwargs({"n": 1}), "default")])
    store.push_many([(job.with_unique_key("k"), "default")])
    store.push_many([(job.with_uploads({"photo": b"png"}), "default")])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    store.push_many([(job.with_scheduled_at(later), "default")])
    store.push_many([(job, "emails")])
    (held,) = store.push_many([(job, "default")])
    store.hold(held)
    lock, hb = store.register_worker("w-old")
    for n, ending in enumerate((Ending.COMPLETED, Ending.FAILED, Ending.CANCELLED, None)):
        (job_id,) = store.push_many([(job.with_kwargs({"k": n}), "default")])
        (name,) = [p for p in store.ready("default") if job_id in p]
        claim = store.claim("default", name, "w-old")
        assert claim is not None
        if ending is None:  # left running by a worker that dies below
            store.close_claim(claim)
            continue
        (store.output_dir(claim) / "out.txt").write_text("output")
        result = {"big": "x" * 70_000} if ending is Ending.COMPLETED else None
        store.finish(claim, Outcome(ending, result=result))
    store.cancel(pending)
    # Flow control: "emails" capped and rated (w-old holds a slot), "video" paused, a schedule.
    store.configure("emails", 5, "1000/s")
    assert _slots.take_slot(store.tree, "emails", 5, "w-old") is not None
    assert _flow.take_token(store.tree, _flow.Looks(), "emails", parse_rate("1000/s")) is None
    store.push_many([(job, "video")])
    store.pause("video")
    store.write_schedule("app.cleanup", {"schedule": "every 60 s", "every": 60})
    assert store.configure("default", UNSET, UNSET).empty
    os.close(lock)  # w-old dies: its running job is rescued by whoever looks
    os.close(hb)
    (root / "tmp" / "0000000000.000000000000000.x.abc").touch()  # a dead push's staging
    store.close()
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    named = {"fsjobs.lock", "queues/default/blocked", "queues/default/running/x"}
    some_job = next(p for p in paths if p.count("/") == 2 and p.startswith("jobs/"))
    named |= {f"{some_job}/cancel", f"{some_job}/attempts", f"{some_job}/000009.jsonl"}
    return root, sorted(set(paths) | named)


@pytest.fixture(scope="module")
def template() -> Iterator[tuple[pathlib.Path, list[str]]]:
    base = pathlib.Path(tempfile.mkdtemp(prefix="fsjobs-hostile-tree-"))
    try:
        yield _template(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _canaries(outside: pathlib.Path) -> None:
    """Files outside the root that would pass for fsjobs files, each naming the canary."""
    outside.mkdir()
    record = journal.encode(
        journal.Record(
            journal.RecordType.PUSHED,
            dt.datetime.now(dt.UTC),
            {"id": "x", "spec": {"queue": "default", "func": FUNC, "kwargs": {"c": CANARY}}},
        )
    )
    (outside / "file").write_bytes(record)
    (outside / "dir").mkdir()
    (outside / "dir" / "000000.jsonl").write_bytes(record)
    (outside / "dir" / "fsjobs.json").write_text('{"format": 2, "features": []}\n')


def _snapshot(top: pathlib.Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(top)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(top.rglob("*"))
    }


def _plant(root: pathlib.Path, rel: str, kind: str, outside: pathlib.Path) -> None:
    target = root / rel
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink":
        target.symlink_to(outside / ("dir" if "." not in target.name else "file"))
    elif kind == "directory":
        target.mkdir()
        (target / "000000.jsonl").write_bytes(b"not a record\n")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.write_bytes(b"\x00garbage\xff" + CANARY.encode() + b"\n")


def _clear(call: typing.Callable[[], object]) -> object:
    """Run `call`: it may raise an fsjobs error (a clear one-line message), nothing else."""
    try:
        return call()
    except fsjobs.FsJobsError as exc:
        assert str(exc).strip(), "an fsjobs error with no message"
        return exc


async def _run_everything(root: pathlib.Path) -> list[object]:
    queue = fsjobs.Queue(root, staleness=0)
    emails = fsjobs.Queue(root, "emails", staleness=0)
    queue.task(name=FUNC)(task)
    seen: list[object] = []
    try:
        for q in (queue, emails):
            worker = fsjobs.Worker(q, concurrency=2, rescue_interval=0.01)
            try:
                async with asyncio.timeout(HANG_GUARD):  # a hang guard, not a timing assertion
                    seen.append(await worker.run_until_empty())
            except fsjobs.FsJobsError as exc:
                seen.append(exc)
        for call in (
            lambda: queue.store.list_jobs(None, None, 100),
            lambda: {q: queue.store.counts(q) for q in queue.store.queues()},
            lambda: queue.store.workers_alive(),
            lambda: queue.store.prune("default", dt.datetime.now(dt.UTC), [JobStatus.COMPLETED]),
            lambda: _stats.collect(queue.store),
            lambda: queue.store.schedules(),
            lambda: [queue.store.flow(q, 0) for q in queue.store.queues()],
            lambda: queue.store.rescue_slots("emails", "hostile-test", 0.0),
        ):
            seen.append(await asyncio.to_thread(_clear, call))
    finally:
        queue.close()
        emails.close()
    return seen


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_planted_entry_is_reported_and_harms_nothing(
    data: st.DataObject, template: tuple[pathlib.Path, list[str]]
) -> None:
    template_root, paths = template
    rel = data.draw(st.sampled_from(paths), label="path")
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    check_planting(template_root, rel, kind)


def check_planting(template_root: pathlib.Path, rel: str, kind: str) -> None:
    """Plant `kind` at `rel` in a copy of the template root, run everything, check."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="fsjobs-plant-"))
    try:
        root, outside = base / "root", base / "outside"
        subprocess.run(["cp", "-a", str(template_root), str(root)], check=True)  # keeps links
        _canaries(outside)
        before = _snapshot(outside)
        _plant(root, rel, kind, outside)
        folders = _published(root)
        store = Store(root, staleness=0)
        try:
            report = _clear(lambda: fsck(store, horizon=0, settle=0))
        finally:
            store.close()
        seen = asyncio.run(_run_everything(root))
        store = Store(root, staleness=0)
        try:
            repaired = _clear(lambda: fsck(store, repair=True, horizon=0, settle=0))
        finally:
            store.close()
        assert _snapshot(outside) == before, "something outside the root was written"
        lost = folders - _job_folders(root) - _pruned(seen)
        assert not lost, f"job folders removed: {sorted(lost)}"
        assert CANARY not in repr(seen) + repr(report) + repr(repaired), "read outside the root"
        if isinstance(report, fsjobs.FsJobsError):
            assert rel == "fsjobs.json", f"fsck refused: {report}"
        else:
            assert isinstance(report, fsjobs.fsck.Report)
            named = [p for p in report.problems if _names(p.path, rel)]
            assert named or _harmless(rel, kind), (rel, kind, report.problems)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _job_folders(root: pathlib.Path) -> set[str]:
    return {p.name for p in root.glob("jobs/*/*") if p.is_dir() and not p.is_symlink()}


def _published(root: pathlib.Path) -> set[str]:
    """
    Jobs whose folder must survive whatever fsck or a worker makes of the planting
    (prune aside): those a marker still stands for (segment 0 has a second link),
    and those that ran (more than one segment). A folder whose only segment lost
    its one marker to the planting is, by the format's own rule, an unpublished push.
    """
    out = set()
    for folder in root.glob("jobs/*/*"):
        segment = folder / "000000.jsonl"
        if folder.is_symlink() or not segment.is_file() or segment.is_symlink():
            continue
        if segment.stat().st_nlink > 1 or (folder / "000001.jsonl").exists():
            out.add(folder.name)
    return out


def _pruned(seen: list[object]) -> set[str]:
    """The completed jobs the run listed: prune may delete them, as it should."""
    listed = next((x for x in seen if isinstance(x, fsjobs.JobPage)), [])
    return {s.id for s in listed if s.status is JobStatus.COMPLETED}


def _names(reported: str, rel: str) -> bool:
    """A problem names the planted path, the folder it sits in, or the job it belongs to."""
    parts = rel.split("/")
    return (
        reported == rel
        or rel.startswith(reported + "/")
        or reported.startswith(rel + "/")
        or reported in parts
    )


def _harmless(rel: str, kind: str) -> bool:
    """
    Plantings that break nothing: a path the layout names but nothing needs yet,
    other bytes in a file whose content is the user's own (an upload, an output),
    or in a file whose name alone means something (a lock, a cancel request).
    """
    users_bytes = "/uploads/" in rel or "/outputs/" in rel
    users_bytes = users_bytes or rel.endswith((".lock", "/cancel", "/paused"))
    users_bytes = users_bytes or "/rate/" in rel  # a token's name is all it says
    other_outputs = kind == "directory" and rel.endswith("/outputs")  # holds one plain file
    return rel == "fsjobs.lock" or (kind == "garbage" and users_bytes) or other_outputs


#: Every path of flow control and schedules the template holds (the sampled test above
#: may miss some): each kind of planting at each must be reported and harm nothing.
FLOW_PATHS = (
    "queues/video/paused",
    "queues/emails/settings.json",
    "queues/emails/slots",
    "queues/emails/slots/0",
    "queues/emails/rate",
    "periodic",
    "periodic/app.cleanup.json",
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rel", FLOW_PATHS)
def test_plantings_in_flow_control_and_schedules(
    rel: str, kind: str, template: tuple[pathlib.Path, list[str]]
) -> None:
    template_root, paths = template
    assert rel in paths, "the template holds it"
    check_planting(template_root, rel, kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prefix", ["queues/emails/slots/0/w-old.", "queues/emails/rate/"])
def test_plantings_at_a_slot_owner_and_a_rate_token(
    prefix: str, kind: str, template: tuple[pathlib.Path, list[str]]
) -> None:
    template_root, paths = template
    (rel,) = [p for p in paths if p.startswith(prefix) and p.count("/") == 4]
    check_planting(template_root, rel, kind)


def test_the_template_holds_a_slot_owner_and_a_rate_token(
    template: tuple[pathlib.Path, list[str]],
) -> None:
    _, paths = template
    assert any(p.startswith("queues/emails/slots/0/w-old.") for p in paths)
    assert any(p.startswith("queues/emails/rate/") and p.count("/") == 4 for p in paths)
