"""The store, used directly: push, ordering, scheduling, unique keys, claims, rescue, safety."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pathlib
import select
import sys
from collections.abc import Callable, Iterator, Sequence

import pytest

import fsjobs
from fsjobs import (
    ErrorInfo,
    FormatError,
    InvalidJob,
    Job,
    JobNotFound,
    JobStatus,
    StoreError,
    journal,
)
from fsjobs._names import Marker
from fsjobs.store import Claim, Ending, Outcome, Store
from fsjobs.testing import FakeClock

Q = "default"
FUNC = "tests.unit.test_store.nothing"


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock a day in the past (whole seconds), so that ids stay time-ordered."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    return FakeClock(start)


@pytest.fixture
def store(root: pathlib.Path, clock: FakeClock) -> Iterator[Store]:
    """A Store over the empty root with the fake clock."""
    s = Store(root, clock=clock, staleness=0)
    yield s
    s.close()


def tree(top: pathlib.Path) -> set[str]:
    """Every path (file, directory or link) under `top`, relative to it."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), top))
    return out


def files(top: pathlib.Path) -> list[pathlib.Path]:
    """Regular files under `top`."""
    return sorted(p for p in top.rglob("*") if p.is_file() and not p.is_symlink())


def job_dirs(root: pathlib.Path) -> list[str]:
    """Ids of the job folders under jobs/."""
    return sorted(p.name for p in root.glob("jobs/*/*") if p.is_dir())


def push(store: Store, job: Job, queue: str = Q) -> str:
    (job_id,) = store.push_many([(job, queue)])
    return job_id


def rescued_from_a_dead_worker(store: Store, max_attempts: int) -> tuple[str, Claim]:
    """A job claimed by worker-a, which then dies, and rescued by worker-b: its id, and
    worker-a's claim, which a late finish may still try."""
    job_id = push(store, Job(func=FUNC, max_attempts=max_attempts))
    fd, hb = store.register_worker("worker-a")
    claim = claim_next(store, "worker-a")
    os.close(fd)  # worker-a dies: its lock is released
    os.close(hb)
    assert store.rescue(Q, "worker-b") == [job_id]
    return job_id, claim


def claim_next(store: Store, worker: str = "w1", queue: str = Q) -> Claim:
    """Claim the job at the head of the queue."""
    paths = store.ready(queue)
    assert paths, "nothing ready"
    claim = store.claim(queue, paths[0], worker)
    assert claim is not None
    return claim


def ready_ids(store: Store, queue: str = Q) -> list[str]:
    return [Marker.parse(p.rsplit("/", 1)[1]).job_id for p in store.ready(queue)]


# -- format ---------------------------------------------------------------------------


def test_fresh_root_gets_format_marker(root: pathlib.Path) -> None:
    """The first write stamps a new root with fsjobs.json: format 2, no features yet."""
    store = Store(root)
    assert not (root / "fsjobs.json").exists()  # the constructor does no I/O
    store.push_many([(Job(func=FUNC), Q)])
    store.close()
    assert json.loads((root / "fsjobs.json").read_text()) == {"format": 2, "features": []}
    Store(root).close()  # and a stamped root opens again


def test_reading_a_missing_root_creates_nothing(tmp_path: pathlib.Path) -> None:
    """Reads of a mistyped root find nothing and leave no directory behind."""
    missing = tmp_path / "typo"
    store = Store(missing)
    assert store.queues() == [] and store.ready(Q) == [] and store.workers_alive() == 0
    assert store.counts(Q) == dict.fromkeys(JobStatus, 0)
    with pytest.raises(JobNotFound):
        store.get("01m8r4rpm0000098cmc92y")
    store.close()
    assert not missing.exists()


@pytest.mark.parametrize(
    "content",
    ['{"format": 3}', '{"format": "2"}', "{}", "[]", "garbage", '{"format": 2, '],
    ids=repr,
)
def test_unknown_or_damaged_format_is_refused(root: pathlib.Path, content: str) -> None:
    """A root whose fsjobs.json is not format 2 raises FormatError (a StoreError) at first use."""
    (root / "fsjobs.json").write_text(content)
    store = Store(root)
    with pytest.raises(FormatError):
        store.push_many([(Job(func=FUNC), Q)])
    with pytest.raises(FormatError):
        store.get("01m8r4rpm0000098cmc92y")
    assert (root / "fsjobs.json").read_text() == content


def test_a_format_1_root_names_fsjobs_migrate(root: pathlib.Path) -> None:
    """A format-1 root is refused with an error that says how to convert it."""
    (root / "fsjobs.json").write_text('{"format":1}\n')
    with pytest.raises(FormatError, match=r"fsjobs --root .* migrate"):
        Store(root).push_many([(Job(func=FUNC), Q)])


def test_an_unknown_feature_makes_the_root_read_only(root: pathlib.Path) -> None:
    """A root using a feature this fsjobs does not know refuses writes, naming it; reads work."""
    store = Store(root, staleness=0)
    job_id = push(store, Job(func=FUNC))
    store.close()
    (root / "fsjobs.json").write_text('{"format": 2, "features": ["teleport@9.1"]}\n')
    store = Store(root, staleness=0)
    try:
        assert store.get(job_id).status is JobStatus.PENDING
        with pytest.raises(FormatError, match=r"'teleport' \(fsjobs 9\.1 or later\)"):
            store.push_many([(Job(func=FUNC), Q)])
        with pytest.raises(FormatError, match="teleport"):
            store.cancel(job_id)
        assert store.rescue(Q, "w1") == [] and store.promote(Q) == 0
    finally:
        store.close()


def test_a_known_feature_is_recorded_once(root: pathlib.Path) -> None:
    """add_feature writes name@version into fsjobs.json under its lock, and only once."""
    store = Store(root)
    store.add_feature("periodic")
    store.add_feature("periodic")
    store.close()
    body = json.loads((root / "fsjobs.json").read_text())
    assert body == {"format": 2, "features": ["periodic@0.2"]}


# -- push ------------------------------------------------------------------------------


def test_push_creates_one_marker_and_a_readable_journal(
    store: Store, root: pathlib.Path, clock: FakeClock
) -> None:
    """A push publishes exactly one pending marker and a journal whose first record is the spec."""
    job = Job(func=FUNC, kwargs={"a": [1, "x"]}, priority=-3, max_attempts=4)
    job_id = push(store, job)
    markers = files(root / "queues" / Q)
    assert len(markers) == 1
    assert "pending" in markers[0].relative_to(root).parts
    marker = Marker.parse(markers[0].name)
    assert (marker.job_id, marker.priority, marker.epoch, marker.attempt) == (job_id, -3, 0, 0)
    assert marker.max_attempts == 4
    segment = root / "jobs" / job_id[-2:] / job_id / "000000.jsonl"
    result = journal.parse(segment.read_bytes())
    assert result.problem is None
    (pushed,) = result.records
    assert pushed.type is journal.RecordType.PUSHED
    assert pushed.data["id"] == job_id
    spec = pushed.data["spec"]
    assert isinstance(spec, dict)
    assert (spec["func"], spec["kwargs"], spec["queue"]) == (FUNC, {"a": [1, "x"]}, Q)
    assert list(root.glob("tmp/*")) == []


def test_pushed_job_reads_back(store: Store, clock: FakeClock) -> None:
    """get() right after push shows the job pending with what was pushed."""
    job_id = push(store, Job(func=FUNC, kwargs={"n": 1}, priority=5, unique_key="k1"))
    state = store.get(job_id)
    assert state.status is JobStatus.PENDING
    assert (state.func, state.kwargs, state.priority, state.queue) == (FUNC, {"n": 1}, 5, Q)
    assert (state.attempts, state.max_attempts, state.unique_key) == (0, 1, "k1")
    assert state.created_at == clock.now()
    assert not state.is_done


def test_get_unknown_id_raises_job_not_found(store: Store) -> None:
    """get() of an id that was never pushed raises JobNotFound (a LookupError)."""
    with pytest.raises(JobNotFound):
        store.get("0" * 22)


@pytest.mark.parametrize("bad", ["../x", "", "a/b", ".hidden"])
def test_get_refuses_malformed_ids(store: Store, bad: str) -> None:
    """get() refuses a string that is not an id before touching the disk."""
    with pytest.raises(InvalidJob):
        store.get(bad)


def _good() -> Job:
    return Job(func=FUNC)


NAIVE = dt.datetime(2030, 1, 1)  # noqa: DTZ001 - the point of the test

REFUSED_PUSHES: dict[str, Callable[[], Sequence[tuple[Job, str]]]] = {
    "naive scheduled_at": lambda: [(_good(), Q), (Job(func=FUNC, scheduled_at=NAIVE), Q)],
    "nan kwargs": lambda: [(Job(func=FUNC, kwargs={"x": float("nan")}), Q)],
    "colliding nested keys": lambda: [(Job(func=FUNC, kwargs={"x": {1: "a", "1": "b"}}), Q)],
    "queue ../x": lambda: [(_good(), Q), (_good(), "../x")],
    "queue a/b": lambda: [(_good(), "a/b")],
    "queue empty": lambda: [(_good(), Q), (_good(), "")],
    "queue .hidden": lambda: [(_good(), ".hidden")],
    "queue -x": lambda: [(_good(), "-x")],
    "queue NUL": lambda: [(_good(), "a\0b")],
    "queue too long": lambda: [(_good(), "q" * 129)],
    "queue newline": lambda: [(_good(), "default\n")],
}


@pytest.mark.parametrize("make_items", REFUSED_PUSHES.values(), ids=REFUSED_PUSHES.keys())
def test_refused_push_creates_nothing(
    store: Store, root: pathlib.Path, make_items: Callable[[], Sequence[tuple[Job, str]]]
) -> None:
    """A push refused by validation raises InvalidJob and leaves the root exactly as it was."""
    push(store, _good())  # the tree is not empty, so new buckets would show
    before = tree(root)
    with pytest.raises(InvalidJob):
        store.push_many(make_items())
    assert tree(root) == before


def test_push_with_missing_upload_file_publishes_nothing(
    store: Store, root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """A push whose upload file cannot be read raises and leaves no job folder or marker."""
    job = Job(func=FUNC, uploads={"data": tmp_path / "missing.bin"})
    with pytest.raises(OSError):
        store.push_many([(job, Q)])
    assert job_dirs(root) == []
    assert files(root / "queues") == []
    assert sum(store.counts(Q).values()) == 0


def test_uploads_are_stored_with_the_job(
    store: Store, root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Bytes and file uploads are copied into the job folder and offered to the claimer."""
    source = tmp_path / "clip.bin"
    source.write_bytes(b"\x00file" * 1000)
    job_id = push(store, Job(func=FUNC, uploads={"raw": b"bytes!", "clip": source}))
    claim = claim_next(store)
    try:
        paths = store.upload_paths(claim)
        assert set(paths) == {"raw", "clip"}
        assert paths["raw"].read_bytes() == b"bytes!"
        assert paths["clip"].read_bytes() == source.read_bytes()
        assert all(root in p.parents for p in paths.values())
        assert claim.job_id == job_id
    finally:
        store.close_claim(claim)


# -- ordering -----------------------------------------------------------------------------


def test_ready_lists_lower_priority_first_fifo_within_priority(
    store: Store, clock: FakeClock
) -> None:
    """ready() returns lower priority values first and, within a priority, push order."""
    prios = [3, -2, 0, -2, 3, 0, 2**31 - 1, -(2**31), 0]
    ids = []
    for i, p in enumerate(prios):
        ids.append(push(store, Job(func=FUNC, priority=p)))
        if i % 2:
            clock.advance(0.001)
    want = [ids[i] for i in sorted(range(len(prios)), key=lambda i: (prios[i], i))]
    assert ready_ids(store) == want


def test_push_many_keeps_fifo_order(store: Store) -> None:
    """Jobs of one push_many batch run in the order given."""
    ids = store.push_many([(Job(func=FUNC, kwargs={"i": i}), Q) for i in range(20)])
    assert ready_ids(store) == ids
    assert len(set(ids)) == 20


def test_ready_respects_limit(store: Store) -> None:
    """ready(limit=n) returns the first n names in run order."""
    ids = store.push_many([(Job(func=FUNC), Q) for _ in range(5)])
    assert [Marker.parse(p.rsplit("/", 1)[1]).job_id for p in store.ready(Q, limit=2)] == ids[:2]


def test_queues_are_separate(store: Store) -> None:
    """A job pushed to one queue is not listed in another."""
    a = push(store, Job(func=FUNC), "alpha")
    assert ready_ids(store, "alpha") == [a]
    assert ready_ids(store, "beta") == []
    assert store.get(a).queue == "alpha"


def test_scheduled_job_waits_until_due(store: Store, clock: FakeClock) -> None:
    """A job scheduled ahead stays 'scheduled' and unready until due, then promote() frees it."""
    when = clock.now() + dt.timedelta(seconds=90)
    job_id = push(store, Job(func=FUNC, scheduled_at=when))
    state = store.get(job_id)
    assert state.status is JobStatus.SCHEDULED
    assert state.scheduled_at == when
    assert store.counts(Q)[JobStatus.SCHEDULED] == 1
    assert store.ready(Q) == []
    assert store.next_due_ms(Q) == int(when.timestamp() * 1000)
    clock.advance(89)
    assert store.promote(Q) == 0
    assert store.ready(Q) == []
    assert store.get(job_id).status is JobStatus.SCHEDULED
    clock.advance(1)
    assert store.promote(Q) == 1
    assert ready_ids(store) == [job_id]
    assert store.get(job_id).status is JobStatus.PENDING
    assert store.next_due_ms(Q) is None


def test_promote_moves_only_due_jobs(store: Store, clock: FakeClock) -> None:
    """promote() moves the jobs that are due and leaves later ones waiting."""
    soon = push(store, Job(func=FUNC, scheduled_at=clock.now() + dt.timedelta(seconds=10)))
    late = push(store, Job(func=FUNC, scheduled_at=clock.now() + dt.timedelta(hours=2)))
    clock.advance(11)
    assert store.promote(Q) == 1
    assert ready_ids(store) == [soon]
    assert store.get(late).status is JobStatus.SCHEDULED
    clock.advance(7200)
    assert store.promote(Q) == 1
    assert ready_ids(store) == [soon, late]


def test_past_scheduled_at_is_pending_at_once(store: Store, clock: FakeClock) -> None:
    """A scheduled_at in the past (or now) makes the job pending right away, in push order."""
    first = push(store, Job(func=FUNC, scheduled_at=clock.now() - dt.timedelta(days=3)))
    second = push(store, Job(func=FUNC, scheduled_at=clock.now()))
    third = push(store, Job(func=FUNC))
    assert ready_ids(store) == [first, second, third]
    assert store.get(first).status is JobStatus.PENDING


# -- unique keys ------------------------------------------------------------------------


def test_unique_key_second_push_returns_first_id(store: Store, root: pathlib.Path) -> None:
    """While a keyed job is unfinished, pushing the key again returns its id and creates nothing."""
    first = push(store, Job(func=FUNC, unique_key="report-1", kwargs={"v": 1}))
    before = files(root / "queues")
    again = push(store, Job(func=FUNC, unique_key="report-1", kwargs={"v": 2}))
    assert again == first
    assert job_dirs(root) == [first]
    assert files(root / "queues") == before
    assert ready_ids(store) == [first]
    assert store.get(first).kwargs == {"v": 1}
    assert files(root / "tmp") == []


def test_unique_key_is_global_across_queues(store: Store) -> None:
    """A key held in one queue is held in every queue of the root."""
    first = push(store, Job(func=FUNC, unique_key="k"), "alpha")
    assert push(store, Job(func=FUNC, unique_key="k"), "beta") == first
    assert ready_ids(store, "beta") == []


def test_unique_key_held_while_scheduled_running_and_retrying(
    store: Store, clock: FakeClock
) -> None:
    """Scheduled, running and retrying jobs all keep their key."""
    job = Job(func=FUNC, unique_key="k", max_attempts=2)
    first = push(store, job.with_scheduled_at(clock.now() + dt.timedelta(seconds=5)))
    assert push(store, job) == first
    clock.advance(5)
    store.promote(Q)
    claim = claim_next(store)
    assert push(store, job) == first
    retry_at = int((clock.now() + dt.timedelta(seconds=30)).timestamp() * 1000)
    assert store.finish(claim, Outcome(Ending.RETRY, retry_at_ms=retry_at))
    assert store.get(first).status is JobStatus.RETRYING
    assert push(store, job) == first


@pytest.mark.parametrize(
    "status",
    [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED],
)
def test_unique_key_is_free_after_the_job_is_final(store: Store, status: JobStatus) -> None:
    """Once the keyed job is final, the key is free: the next push makes a new job."""
    first = push(store, Job(func=FUNC, unique_key="k"))
    claim = claim_next(store)
    error = None if status is JobStatus.COMPLETED else ErrorInfo("E", "m")
    assert store.finish(claim, Outcome(Ending(status.value), result=1, error=error))
    assert store.get(first).status is status
    second = push(store, Job(func=FUNC, unique_key="k"))
    assert second != first
    assert store.get(second).status is JobStatus.PENDING
    assert ready_ids(store) == [second]
    assert push(store, Job(func=FUNC, unique_key="k")) == second


def test_duplicate_keys_in_one_push_many_get_the_first_id(store: Store, root: pathlib.Path) -> None:
    """Within one push_many, later jobs with a key already in the batch get the first one's id."""
    ids = store.push_many(
        [
            (Job(func=FUNC, unique_key="a", kwargs={"i": 0}), Q),
            (Job(func=FUNC, unique_key="b", kwargs={"i": 1}), Q),
            (Job(func=FUNC, unique_key="a", kwargs={"i": 2}), Q),
            (Job(func=FUNC, kwargs={"i": 3}), Q),
            (Job(func=FUNC, unique_key="a", kwargs={"i": 4}), Q),
        ]
    )
    assert ids[0] == ids[2] == ids[4]
    assert len({ids[0], ids[1], ids[3]}) == 3
    assert job_dirs(root) == sorted({ids[0], ids[1], ids[3]})
    assert ready_ids(store) == [ids[0], ids[1], ids[3]]
    assert store.get(ids[0]).kwargs == {"i": 0}


def test_unique_keys_are_hashed_on_disk(store: Store, root: pathlib.Path) -> None:
    """A hostile unique key never becomes a path: keys are hashed."""
    key = "../../etc/passwd\0/x"
    first = push(store, Job(func=FUNC, unique_key=key))
    assert push(store, Job(func=FUNC, unique_key=key)) == first
    names = [p.name for p in (root / "unique").iterdir()]
    assert len(names) == 1
    assert len(names[0]) == 64
    assert set(names[0]) <= set("0123456789abcdef")


# -- claim and finish -----------------------------------------------------------------------


def test_claim_is_exclusive(store: Store, root: pathlib.Path) -> None:
    """Of two claims of the same pending marker, only the first wins."""
    job_id = push(store, Job(func=FUNC, max_attempts=3))
    path = store.ready(Q)[0]
    first = store.claim(Q, path, "w1")
    assert first is not None
    try:
        assert store.claim(Q, path, "w2") is None
        assert first.job_id == job_id
        assert (first.marker.epoch, first.marker.attempt, first.marker.max_attempts) == (1, 1, 3)
        assert first.runnable
        assert first.job == Job(func=FUNC, max_attempts=3)
        assert store.ready(Q) == []
        state = store.get(job_id)
        assert (state.status, state.attempts, state.worker) == (JobStatus.RUNNING, 1, "w1")
        assert [m.job_id for m, w in store.running(Q)] == [job_id]
    finally:
        store.close_claim(first)


def test_claim_ignores_foreign_names(store: Store) -> None:
    """A path that is not a marker is not claimed."""
    assert store.claim(Q, "queues/default/pending/x/y/z/not-a-marker", "w1") is None


def test_finish_completed_publishes_the_result(store: Store, root: pathlib.Path) -> None:
    """A completed attempt moves the job to completed/<day>/<id> with its result and timings."""
    job_id = push(store, Job(func=FUNC))
    claim = claim_next(store)
    assert store.finish(claim, Outcome(Ending.COMPLETED, result={"ok": [1, 2]}))
    state = store.get(job_id)
    assert state.status is JobStatus.COMPLETED
    assert state.is_done
    assert state.result == {"ok": [1, 2]}
    assert (state.attempts, state.max_attempts, state.error) == (1, 1, None)
    assert state.duration is not None and state.duration >= 0
    assert list(root.glob(f"queues/{Q}/completed/*/{job_id}"))
    assert list(root.glob(f"queues/{Q}/running/*")) == []
    assert store.counts(Q)[JobStatus.COMPLETED] == 1


def test_large_result_reads_back(store: Store) -> None:
    """A result too large for the journal line is still returned by get()."""
    job_id = push(store, Job(func=FUNC))
    claim = claim_next(store)
    big = ["x" * 1000] * 200
    assert store.finish(claim, Outcome(Ending.COMPLETED, result=big))
    assert store.get(job_id).result == big


def test_finish_failed_keeps_the_error(store: Store) -> None:
    """A failed attempt publishes the job as failed with its error."""
    job_id = push(store, Job(func=FUNC))
    claim = claim_next(store)
    error = ErrorInfo("ValueError", "bad input", "Traceback ...")
    assert store.finish(claim, Outcome(Ending.FAILED, error=error))
    state = store.get(job_id)
    assert (state.status, state.error, state.result) == (JobStatus.FAILED, error, None)


def test_finished_claim_cannot_finish_again(store: Store) -> None:
    """finish() on a claim that already finished returns False and changes nothing."""
    job_id = push(store, Job(func=FUNC))
    claim = claim_next(store)
    assert store.finish(claim, Outcome(Ending.COMPLETED, result=1))
    assert not store.finish(claim, Outcome(Ending.FAILED, error=ErrorInfo("E", "m")))
    assert store.get(job_id).status is JobStatus.COMPLETED


def test_released_job_does_not_use_an_attempt(store: Store) -> None:
    """A claim given back (worker stopping) returns the job to pending with its attempt restored."""
    job_id = push(store, Job(func=FUNC, max_attempts=2))
    claim = claim_next(store)
    assert store.finish(claim, Outcome(Ending.GIVE_BACK))
    state = store.get(job_id)
    assert (state.status, state.attempts) == (JobStatus.PENDING, 0)
    again = claim_next(store)
    try:
        assert again.marker.attempt == 1
    finally:
        store.close_claim(again)


def test_retrying_job_waits_then_runs_its_next_attempt(store: Store, clock: FakeClock) -> None:
    """A retrying job waits out its backoff in waiting/, then its next claim is attempt 2."""
    job_id = push(store, Job(func=FUNC, max_attempts=3))
    claim = claim_next(store)
    retry_at = int((clock.now() + dt.timedelta(seconds=30)).timestamp() * 1000)
    error = ErrorInfo("E", "first")
    assert store.finish(claim, Outcome(Ending.RETRY, error=error, retry_at_ms=retry_at))
    state = store.get(job_id)
    assert (state.status, state.attempts, state.error) == (JobStatus.RETRYING, 1, error)
    assert store.counts(Q)[JobStatus.RETRYING] == 1
    assert store.ready(Q) == []
    clock.advance(29)
    assert store.promote(Q) == 0
    clock.advance(1)
    assert store.promote(Q) == 1
    claim = claim_next(store)
    assert (claim.marker.attempt, claim.marker.epoch) == (2, 2)
    assert store.finish(claim, Outcome(Ending.COMPLETED, result="done"))
    state = store.get(job_id)
    assert (state.status, state.attempts, state.result) == (JobStatus.COMPLETED, 2, "done")


def test_progress_is_visible_while_running(store: Store) -> None:
    """progress() records percent and message, and get() shows them."""
    job_id = push(store, Job(func=FUNC))
    claim = claim_next(store)
    try:
        store.progress(claim, 42.5, "halfway")
        state = store.get(job_id)
        assert (state.progress, state.progress_message) == (42.5, "halfway")
    finally:
        store.close_claim(claim)


# -- workers and rescue -------------------------------------------------------------------


def test_worker_id_cannot_be_registered_twice(store: Store) -> None:
    """A live worker's id is refused to a second registration."""
    fd, hb = store.register_worker("worker-a")
    try:
        with pytest.raises(StoreError):
            store.register_worker("worker-a")
    finally:
        store.unregister_worker("worker-a", fd, hb)
    store.unregister_worker("worker-a", *store.register_worker("worker-a"))


def test_rescue_leaves_a_live_workers_job_alone(store: Store) -> None:
    """A job whose worker still holds its lock is not rescued."""
    job_id = push(store, Job(func=FUNC))
    fd, hb = store.register_worker("worker-a")
    claim = claim_next(store, "worker-a")
    try:
        assert store.rescue(Q, "worker-b") == []
        assert store.get(job_id).status is JobStatus.RUNNING
        assert store.finish(claim, Outcome(Ending.COMPLETED, result=1))
    finally:
        store.unregister_worker("worker-a", fd, hb)
    assert store.get(job_id).status is JobStatus.COMPLETED


def test_rescue_puts_a_dead_workers_job_back_with_same_attempts(
    store: Store, root: pathlib.Path
) -> None:
    """A dead worker's job goes back to pending with its attempt count kept and the epoch bumped."""
    job_id = push(store, Job(func=FUNC, max_attempts=3))
    fd, hb = store.register_worker("worker-a")
    claim = claim_next(store, "worker-a")
    os.close(fd)  # worker-a dies: its lock is released
    os.close(hb)
    try:
        assert store.rescue(Q, "worker-b") == [job_id]
        state = store.get(job_id)
        assert (state.status, state.attempts, state.max_attempts) == (JobStatus.PENDING, 1, 3)
        assert store.running(Q) == []
        assert not (root / "workers" / "worker-a.lock").exists()
        again = claim_next(store, "worker-b")
        assert (again.marker.attempt, again.marker.epoch, again.runnable) == (2, 3, True)
        assert store.finish(again, Outcome(Ending.COMPLETED, result=2))
        assert store.get(job_id).result == 2
    finally:
        store.close_claim(claim)


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(Ending.COMPLETED, result={"zombie": True}),
        Outcome(Ending.FAILED, error=ErrorInfo("ZombieError", "late")),
        Outcome(Ending.RETRY, error=ErrorInfo("ZombieError", "late"), retry_at_ms=0),
    ],
    ids=lambda o: o.ending.value,
)
def test_finish_after_rescue_is_fenced(store: Store, root: pathlib.Path, outcome: Outcome) -> None:
    """A rescued worker's late finish returns False and changes nothing anyone can see."""
    job_id, claim = rescued_from_a_dead_worker(store, max_attempts=2)
    before = store.get(job_id)
    markers_before = files(root / "queues")
    assert store.finish(claim, outcome) is False
    assert files(root / "queues") == markers_before
    assert store.get(job_id) == before
    assert ready_ids(store) == [job_id]
    history = store.history(job_id)
    assert [e.type for e in history if not e.fenced] == ["pushed", "claimed", "rescued"]
    assert all(e.type == outcome.ending.value for e in history if e.fenced)


def test_a_late_completion_stays_fenced_when_the_rescues_record_is_missing(
    store: Store, root: pathlib.Path
) -> None:
    """
    A rescuer killed between its rename and its record (or one that could not
    write it: ESTALE on GlusterFS) leaves no segment for its epoch. The fenced
    owner's late ``completed`` must still not count: a two-host soak found one
    job whose history showed two completions.
    """
    job_id, late = rescued_from_a_dead_worker(store, max_attempts=3)
    (folder,) = (root / "jobs").glob(f"*/{job_id}")
    (folder / "000002.jsonl").unlink()  # the rescuer's record never written
    assert store.finish(late, Outcome(Ending.COMPLETED, result="late")) is False
    store.register_worker("worker-c")
    again = claim_next(store, "worker-c")
    assert store.finish(again, Outcome(Ending.COMPLETED, result="real")) is True
    history = store.history(job_id)
    assert [e.epoch for e in history if e.type == "completed" and not e.fenced] == [3]
    assert [e.epoch for e in history if e.type == "completed" and e.fenced] == [1]
    state = store.get(job_id)
    assert (state.status, state.result) == (JobStatus.COMPLETED, "real")


def test_lost_last_attempt_is_not_runnable(store: Store) -> None:
    """A rescued job whose last attempt was lost is claimed as not runnable, attempts unchanged."""
    job_id = push(store, Job(func=FUNC, max_attempts=1))
    fd, hb = store.register_worker("worker-a")
    claim = claim_next(store, "worker-a")
    os.close(fd)
    os.close(hb)
    store.close_claim(claim)
    assert store.rescue(Q, "worker-b") == [job_id]
    assert store.get(job_id).attempts == 1
    again = claim_next(store, "worker-b")
    try:
        assert again.runnable is False
        assert (again.marker.attempt, again.marker.max_attempts) == (1, 1)
    finally:
        store.close_claim(again)


@pytest.mark.asyncio
async def test_lost_last_attempt_fails_with_worker_lost(root: pathlib.Path) -> None:
    """A worker that claims a job whose last attempt died with its worker fails it as WorkerLost."""
    store = Store(root, staleness=0)
    job_id = push(store, Job(func="tests.unit.test_store.never_registered", max_attempts=1))
    fd, hb = store.register_worker("worker-a")
    claim = claim_next(store, "worker-a")
    os.close(fd)
    os.close(hb)
    store.close_claim(claim)
    store.close()
    queue = fsjobs.Queue(root, staleness=0)
    try:
        worker = fsjobs.Worker(queue, handle_signals=False)
        async with asyncio.timeout(60):  # fail, not hang, if a regression stalls the worker
            assert await worker.run_until_empty() == 1
        state = await queue.get(job_id)
        assert state.status is JobStatus.FAILED
        assert state.error is not None and state.error.type == "WorkerLost"
        assert state.attempts == 1
    finally:
        queue.close()


# -- symlinks and hostile trees ---------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory outside the root that must never be written."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "keep.txt").write_text("untouched")
    return path


@pytest.mark.parametrize(
    ("link", "job"),
    [
        ("queues", Job(func=FUNC)),
        ("queues", Job(func=FUNC, unique_key="k")),
        ("jobs", Job(func=FUNC)),
        ("tmp", Job(func=FUNC, unique_key="k")),
        ("unique", Job(func=FUNC, unique_key="k")),
    ],
)
def test_symlinked_top_directory_is_refused(
    root: pathlib.Path, outside: pathlib.Path, clock: FakeClock, link: str, job: Job
) -> None:
    """A symlink planted at a top directory the push needs makes it fail; nothing lands outside."""
    (root / link).symlink_to(outside, target_is_directory=True)
    store = Store(root, clock=clock, staleness=0)
    try:
        before = tree(outside)
        with pytest.raises(StoreError):
            store.push_many([(job, Q)])
        assert tree(outside) == before
        assert (outside / "keep.txt").read_text() == "untouched"
    finally:
        store.close()


def test_symlinked_workers_directory_is_refused(
    root: pathlib.Path, outside: pathlib.Path, clock: FakeClock
) -> None:
    """A symlink at ROOT/workers makes worker registration fail; no lock file lands outside."""
    (root / "workers").symlink_to(outside, target_is_directory=True)
    store = Store(root, clock=clock, staleness=0)
    try:
        with pytest.raises(StoreError):
            store.register_worker("worker-a")
        assert tree(outside) == {"keep.txt"}
    finally:
        store.close()


def test_symlinked_job_folder_is_refused(
    store: Store, root: pathlib.Path, outside: pathlib.Path
) -> None:
    """A job whose folder is a symlink is never read or written through it."""
    job_id = push(store, Job(func=FUNC))
    journal_dir = root / "jobs" / job_id[-2:] / job_id
    for f in journal_dir.iterdir():
        f.rename(outside / f.name)
    journal_dir.rmdir()
    journal_dir.symlink_to(outside, target_is_directory=True)
    before = {p: (outside / p).read_bytes() for p in tree(outside)}
    # The spec behind the link is not read: the job is known from its marker alone.
    assert store.get(job_id).status is JobStatus.PENDING
    path = store.ready(Q)[0]
    assert store.claim(Q, path, "w1") is None
    assert {p: (outside / p).read_bytes() for p in tree(outside)} == before
    assert store.running(Q) == []
    assert store.ready(Q) == []
    assert store.get(job_id).status is JobStatus.CORRUPT  # quarantined, not lost


def test_symlinked_root_is_refused(root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """A root path that is itself a symlink is refused with StoreError."""
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    store = Store(link)
    with pytest.raises(StoreError):
        store.push_many([(Job(func=FUNC), Q)])
    assert not (root / "fsjobs.json").exists()


def test_symlinked_format_file_is_refused(root: pathlib.Path, outside: pathlib.Path) -> None:
    """A symlink planted at ROOT/fsjobs.json is refused with StoreError, not followed."""
    target = outside / "fsjobs.json"
    target.write_text('{"format": 2, "features": []}\n')
    (root / "fsjobs.json").symlink_to(target)
    with pytest.raises(StoreError):
        Store(root).push_many([(Job(func=FUNC), Q)])


def test_foreign_files_in_pending_are_skipped(store: Store, root: pathlib.Path) -> None:
    """A stray file in the pending tree is never claimed and does not hide real jobs."""
    job_id = push(store, Job(func=FUNC))
    (bucket,) = {p.parent for p in files(root / "queues" / Q / "pending")}
    (bucket / "0README").write_text("not a job")
    paths = store.ready(Q)
    claims = [store.claim(Q, p, "w1") for p in paths]
    won = [c for c in claims if c is not None]
    try:
        assert [c.job_id for c in won] == [job_id]
        assert (bucket / "0README").exists()
    finally:
        for c in won:
            store.close_claim(c)


def readable(fd: int, timeout: float) -> bool:
    """Whether `fd` becomes readable within `timeout` seconds (poll: any descriptor number)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")
@pytest.mark.parametrize("when", ["now", "later"])
def test_a_push_by_another_store_rings_the_watchers_bell(
    store: Store, root: pathlib.Path, clock: FakeClock, when: str
) -> None:
    """Idle workers watch pending/ and waiting/; a push from another process wakes them."""
    watcher = store.watch([Q])
    assert watcher is not None
    try:
        assert not readable(watcher.fd, 0)
        other = Store(root, clock=clock, staleness=0)
        at = None if when == "now" else clock.now() + dt.timedelta(hours=1)
        push(other, Job(func=FUNC, scheduled_at=at))
        other.close()
        assert readable(watcher.fd, 10)
        watcher.drain()
        assert not readable(watcher.fd, 0), "drained"
    finally:
        watcher.close()


def test_an_empty_bucket_is_removed_only_once_past(
    store: Store, root: pathlib.Path, clock: FakeClock
) -> None:
    """A pusher may have just made the current bucket: listing leaves it until it is past."""
    job_id = push(store, Job(func=FUNC))
    store.finish(claim_next(store), Outcome(Ending.COMPLETED))
    buckets = list((root / "queues" / Q / "pending").glob("*/*/*"))
    assert len(buckets) == 1 and not any(buckets[0].iterdir())
    assert store.ready(Q) == []
    assert buckets[0].is_dir(), "the current, empty bucket stays"
    clock.advance(10)
    assert store.ready(Q) == []
    assert not buckets[0].exists(), "a past one goes"
    assert buckets[0].parent.is_dir(), "its hour is not past yet"
    clock.advance(3600)
    assert store.ready(Q) == []  # a level per listing: the hour goes
    priority = buckets[0].parent.parent
    assert priority.is_dir(), "a priority directory changed just now stays (a pusher may fill it)"
    changed = clock.now().timestamp() - 60  # its last change as old as the store's clock says
    os.utime(priority, (changed, changed))
    assert store.ready(Q) == []
    assert not list((root / "queues" / Q / "pending").iterdir()), "then the priority goes"
    assert store.get(job_id).status is JobStatus.COMPLETED
