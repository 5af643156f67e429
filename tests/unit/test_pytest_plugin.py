"""
The pytest plugin ``fsjobs`` (fsjobs.testing), as a user's test suite meets it:
each test here writes a small suite and runs pytest on it with ``pytester``.
"""

from __future__ import annotations

import pytest

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

#: The application under test: tasks on its own queue, and code that enqueues them.
APP = """
import fsjobs

app = fsjobs.Queue({root!r})


@app.task()
def add(a: int, b: int) -> int:
    return a + b


@app.task()
async def broken() -> None:
    raise ValueError("boom")


@app.task()
async def audit(event: str) -> str:
    return event


@app.task()
async def welcome(name: str) -> str:
    await audit.enqueue(event=f"welcomed {{name}}")   # a task that pushes another
    return f"welcome {{name}}"


async def signup(name: str) -> str:
    return await welcome.enqueue(name=name)
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makepyfile(app=APP.format(root=str(pytester.path / "app-root")))
    return pytester


def test_the_entry_point_provides_the_fixtures(suite: pytest.Pytester) -> None:
    """Installing fsjobs is enough (no conftest); ``-p no:fsjobs`` takes the fixtures away."""
    suite.makepyfile(
        test_fixtures="""
        import fsjobs

        async def test_queue(fsjobs_queue, fsjobs_root, tmp_path):
            assert fsjobs_root.parent == tmp_path and fsjobs_queue.root == str(fsjobs_root)
            job_id = await fsjobs_queue.push(fsjobs.Job(func="some.task"))
            assert (await fsjobs_queue.get(job_id)).status is fsjobs.JobStatus.PENDING

        def test_sync_queue_shares_the_root(fsjobs_sync_queue, fsjobs_queue):
            assert isinstance(fsjobs_sync_queue, fsjobs.SyncQueue)
            assert fsjobs_sync_queue.root == fsjobs_queue.root
            fsjobs_sync_queue.push(fsjobs.Job(func="some.task"))
            assert fsjobs_sync_queue.counts()[fsjobs.JobStatus.PENDING] == 1

        def test_each_test_gets_a_fresh_root(fsjobs_sync_queue):
            assert sum(fsjobs_sync_queue.counts().values()) == 0
        """
    )
    suite.runpytest_subprocess().assert_outcomes(passed=3)
    off = suite.runpytest_subprocess("-p", "no:fsjobs")
    off.assert_outcomes(errors=3)
    off.stdout.fnmatch_lines(["*fixture 'fsjobs_*' not found*"])


def test_eager_mode_runs_each_job_inside_its_push(suite: pytest.Pytester) -> None:
    """
    With fsjobs_eager, a push returns after the job ran: result and failure are there
    at once through the normal API, for the fixture's queue, the application's own
    queue (a task that pushes another included) and SyncQueue, even inside a loop.
    A job scheduled in the future still waits; after the test, pushes no longer run.
    """
    suite.makepyfile(
        test_eager="""
        import datetime as dt
        import pytest
        import fsjobs
        from app import add, app, audit, broken, signup

        async def test_result_at_once(fsjobs_eager):
            job_id = await fsjobs_eager.push(add.job(a=2, b=3))
            assert (await fsjobs_eager.get(job_id)).status is fsjobs.JobStatus.COMPLETED
            assert await fsjobs_eager.result(job_id) == 5

        async def test_failure_at_once(fsjobs_eager):
            job_id = await fsjobs_eager.push(broken.job())
            with pytest.raises(fsjobs.JobFailed, match="ValueError: boom"):
                await fsjobs_eager.result(job_id)

        async def test_application_code_and_nested_pushes(fsjobs_eager, fsjobs_pushed):
            job_id = await signup("ann")
            assert await app.result(job_id) == "welcome ann"
            nested = fsjobs_pushed.assert_pushed(audit, event="welcomed ann")
            assert await app.result(nested.id) == "welcomed ann"

        def test_sync_queue(fsjobs_eager, fsjobs_sync_queue):
            assert fsjobs_sync_queue.result(fsjobs_sync_queue.push(add.job(a=1, b=1))) == 2

        async def test_sync_queue_on_the_loop_thread(fsjobs_eager, fsjobs_sync_queue):
            assert fsjobs_sync_queue.result(fsjobs_sync_queue.push(add.job(a=2, b=2))) == 4

        async def test_a_future_job_is_not_run_early(fsjobs_eager):
            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            job_id = await fsjobs_eager.push(add.job(a=1, b=2).with_scheduled_at(later))
            assert (await fsjobs_eager.get(job_id)).status is fsjobs.JobStatus.SCHEDULED

        async def test_z_after_eager_tests_pushes_wait_for_a_worker(fsjobs_queue):
            job_id = await fsjobs_queue.push(add.job(a=2, b=3))
            assert (await fsjobs_queue.get(job_id)).status is fsjobs.JobStatus.PENDING
        """
    )
    suite.runpytest_subprocess().assert_outcomes(passed=7)


def test_assertions_on_what_was_pushed(suite: pytest.Pytester) -> None:
    """
    fsjobs_pushed records every push of the test, whatever the queue; assert_pushed
    matches a task and part of its kwargs and returns the job to check its options; a
    failed assertion lists what was pushed; the record starts empty in each test.
    """
    suite.makepyfile(
        test_pushed="""
        import fsjobs
        from app import add, app, signup

        async def test_matches(fsjobs_queue, fsjobs_pushed):
            await fsjobs_queue.push(add.job(a=1, b=2).with_priority(-5))
            await signup("bob")
            found = fsjobs_pushed.assert_pushed(add, a=1)
            assert (found.job.priority, found.queue) == (-5, "default")
            assert found.root == fsjobs_queue.root
            assert fsjobs_pushed.assert_pushed("app.welcome", name="bob").root == app.root
            fsjobs_pushed.assert_not_pushed(add, a=9)
            assert [p.func for p in fsjobs_pushed] == ["app.add", "app.welcome"]
            assert len(fsjobs_pushed.of(add)) == 1
            assert (await fsjobs_queue.get(found.id)).kwargs == {"a": 1, "b": 2}

        def test_starts_empty(fsjobs_pushed):
            assert len(fsjobs_pushed) == 0

        async def test_fails_with_what_was_pushed(fsjobs_queue, fsjobs_pushed):
            await fsjobs_queue.push(add.job(a=1, b=2))
            fsjobs_pushed.assert_pushed(add, a=3)

        async def test_not_pushed_fails(fsjobs_queue, fsjobs_pushed):
            await fsjobs_queue.push(add.job(a=1, b=2))
            fsjobs_pushed.assert_not_pushed(add)
        """
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: no job of app.add with kwargs including {'a': 3} was pushed; pushed:",
            "*app.add({'a': 1, 'b': 2}) to queue 'default'",
            "*AssertionError: 1 job(s) of app.add with kwargs including {} were pushed*",
        ]
    )
