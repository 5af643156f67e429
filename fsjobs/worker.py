"""
`Worker`: claims jobs from one or more queues and runs them.

Async tasks run on the event loop; sync tasks run in a thread pool of the
worker's concurrency. The worker holds an OFD lock on ``workers/<id>.lock`` for
its whole life; any other worker that can take that lock knows this one is dead
and puts its running jobs back (see `Store.rescue`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import math
import signal
import threading
import time
import traceback
import typing
from collections import deque
from collections.abc import Sequence

from . import _ids, _names, tasks
from ._clock import Clock, to_ms
from ._inotify import Watcher
from ._json import dumps
from ._text import printable
from ._wakeups import Waker, io_pool, signals
from .context import Context
from .doctor import mount_problems
from .errors import ResultNotSerializable, Retry, StoreFull, UnknownTask
from .model import DEFAULT_BACKOFF, MAX_RESULT_BYTES, to_json_result
from .queue import Queue
from .states import ErrorInfo
from .store import Claim, Ending, Outcome, Store

logger = logging.getLogger(__name__)

#: A busy worker re-lists a queue's head at least this often, so a better job
#: pushed later is taken soon (DESIGN.md §2.1 rule 1).
RELIST_INTERVAL = 0.1
PROGRESS_INTERVAL = 0.5
#: how long a worker stops claiming after the disk was found full
FULL_PAUSE = 1.0
#: after an outcome could not be published, claims stop for this long, doubling up to
#: the maximum while publishing keeps failing (DESIGN.md §4.4 rule 4)
PUBLISH_BACKOFF_FIRST = 1.0
PUBLISH_BACKOFF_MAX = 60.0
#: the longest an idle worker waits between looks at its queues, by filesystem
IDLE_POLL_LOCAL = 0.5
IDLE_POLL_NETWORK = 0.1


#: Why a claimed job whose last attempt already ran ends failed, by `Claim.exhausted_by`.
_EXHAUSTED = {
    "WorkerLost": ErrorInfo("WorkerLost", "the worker running its last attempt died"),
    "PublishFailed": ErrorInfo(
        "PublishFailed", "the outcome of its last attempt could not be recorded"
    ),
}


def _error_info(exc: BaseException) -> ErrorInfo:
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return ErrorInfo(name, str(exc), "".join(traceback.format_exception(exc)))


class Worker:
    """
    Runs jobs of `queues` (default: the queue's own) under the queue's root,
    at most `concurrency` at a time.

    With `handle_signals` (``fsjobs worker`` sets it), `run()` in the main thread
    handles SIGTERM and SIGINT: the first stops claiming and lets running jobs
    finish within `grace_period`; a second releases them at once. Without it the
    worker installs no signal handler: the application decides.
    """

    def __init__(
        self,
        queue: Queue,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        *,
        clock: Clock | None = None,
        worker_id: str | None = None,
        poll_interval: float = 0.01,
        max_poll_interval: float | None = None,
        rescue_interval: float = 1.0,
        lease: float = 30.0,
        grace_period: float = 30.0,
        allow_import: Sequence[str] = (),
        handle_signals: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.queue = queue
        self.store = queue.store
        self.queues = [_names.check_name("queue", q) for q in (queues or [queue.name])]
        self.concurrency = concurrency
        self.clock = clock or queue.clock
        self.id = _names.check_worker_id(worker_id or _ids.new_worker_id())
        self.poll_interval = poll_interval
        if max_poll_interval is None:
            # Another host's push rings no inotify bell here: on a network
            # filesystem an idle worker keeps looking every 100 ms.
            max_poll_interval = IDLE_POLL_NETWORK if self.store.staleness else IDLE_POLL_LOCAL
        self.max_poll_interval = max_poll_interval
        self.rescue_interval = rescue_interval
        if not lease > 0:
            raise ValueError("lease must be positive")
        self.lease = lease
        self.grace_period = grace_period
        self.allow_import = tuple(allow_import)
        self.handle_signals = handle_signals
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: dict[asyncio.Task[None], Claim] = {}
        #: why a running task was cancelled: "cancel" or "fenced" (otherwise: shutdown)
        self._stop_reasons: dict[asyncio.Task[None], str] = {}
        self._finishing: set[str] = set()
        self._to_finish: list[tuple[Claim, Outcome, asyncio.Future[bool]]] = []
        self._finisher: asyncio.Task[None] | None = None
        self._heartbeat: _Heartbeat | None = None
        self._paused_until = -math.inf  # no claims before this (time.monotonic)
        self._publish_backoff = ClaimBackoff()
        self._stopping = False
        self._waker: Waker | None = None
        self.ran = 0

    def __repr__(self) -> str:
        return f"<fsjobs.Worker {self.id} queues={self.queues}>"

    def stop(self) -> None:
        """Stop claiming; running jobs get `grace_period` seconds to finish."""
        self._stopping = True
        if self._waker is not None:
            self._waker.wake()

    async def run(self) -> None:
        """Run jobs until cancelled or stopped (with `handle_signals`: SIGTERM/SIGINT)."""
        await self._serve(until_empty=False, wait_scheduled=False, max_wait=None)

    async def run_until_empty(
        self, *, wait_scheduled: bool = False, max_wait: float | None = None
    ) -> int:
        """
        Run jobs until none of the worker's queues has a due job and none of its
        own is running; with `wait_scheduled`, also wait for scheduled jobs and
        backoffs (at most `max_wait` seconds). Returns the attempts it ran.
        """
        before = self.ran
        await self._serve(until_empty=True, wait_scheduled=wait_scheduled, max_wait=max_wait)
        return self.ran - before

    # -- the loop -----------------------------------------------------------------

    async def _serve(
        self, *, until_empty: bool, wait_scheduled: bool, max_wait: float | None
    ) -> None:
        self._stopping = False
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix=f"fsjobs-task-{self.id}"
        )
        self._waker = waker = Waker()
        signals.on_push(self.queue.root, waker)
        lock_fd, hb_fd = await self.queue.io(self.store.register_worker, self.id)
        self._heartbeat = heartbeat = _Heartbeat(self.store, hb_fd, self.lease / 6)
        heartbeat.start()
        bell = await self.queue.io(self.store.watch, self.queues)
        if bell is not None:
            asyncio.get_running_loop().add_reader(bell.fd, self._on_bell, bell, waker)
        started = self.clock.monotonic()
        installed = self._install_signals() if not until_empty else []
        logger.info(
            "worker %s serving %s under %s", self.id, self.queues, printable(self.queue.root)
        )
        for problem in mount_problems(self.queue.root):
            logger.warning(
                "worker %s: unsafe mount: %s (see fsjobs doctor)",
                self.id,
                printable(problem.detail),
            )
        listings: dict[str, deque[str]] = {q: deque() for q in self.queues}
        listed_at: dict[str, float] = dict.fromkeys(self.queues, -math.inf)
        last_rescue = last_check = -math.inf
        check_interval = min(0.5, self.lease / 6)
        delay = self.poll_interval
        try:
            while not self._stopping:
                now = self.clock.monotonic()
                if now - last_rescue >= self.rescue_interval:
                    for q in self.queues:
                        await self.queue.io(self.store.rescue, q, self.id, self.lease)
                    last_rescue = now
                if self._running and time.monotonic() - last_check >= check_interval:
                    await self._check_running()
                    last_check = time.monotonic()
                silent = heartbeat.silent_for()
                if silent > 2 * self.lease / 3:
                    self._fence_all(silent)
                claimed = 0 if silent > self.lease / 2 else await self._fill(listings, listed_at)
                if until_empty and not claimed and not self._running:
                    if self._claims_paused():  # not empty: due jobs wait for the pause to end
                        await waker.wait(self._paused_until - time.monotonic())
                        continue
                    pause = await self._idle_pause(wait_scheduled, max_wait, started)
                    if pause is None:
                        break
                    await waker.wait(pause)
                    continue
                delay = self.poll_interval if claimed else min(delay * 2, self.max_poll_interval)
                if claimed and len(self._running) < self.concurrency:
                    continue
                await self._wait_for_change(waker, delay)
        finally:
            if bell is not None:
                asyncio.get_running_loop().remove_reader(bell.fd)
                bell.close()
            try:
                await self._shutdown()
            finally:
                # Only now: a second signal during the grace period releases the jobs.
                for sig in installed:
                    asyncio.get_running_loop().remove_signal_handler(sig)
            await self.queue.io(heartbeat.stop)
            await self.queue.io(self.store.unregister_worker, self.id, lock_fd, hb_fd)
            self._waker = self._heartbeat = None

    @staticmethod
    def _on_bell(bell: Watcher, waker: Waker) -> None:
        """A job landed in a watched directory (pushed by another process on this host)."""
        bell.drain()
        waker.wake()

    async def _idle_pause(
        self, wait_scheduled: bool, max_wait: float | None, started: float
    ) -> float | None:
        """How long an emptied `run_until_empty` should wait for a scheduled job; None: stop."""
        if not wait_scheduled:
            return None
        due = [await self.queue.io(self.store.next_due_ms, q) for q in self.queues]
        due_ms = min((d for d in due if d is not None), default=None)
        if due_ms is None:
            return None
        pause = max(0.0, (due_ms - to_ms(self.clock.now())) / 1000)
        if max_wait is not None:
            left = max_wait - (self.clock.monotonic() - started)
            if left <= 0 or pause > left:
                return None
        return min(pause + 0.001, self.max_poll_interval)

    async def _wait_for_change(self, waker: Waker, delay: float) -> None:
        """Sleep until a job ends, a push in this process wakes us, or `delay` passes."""
        wait_waker = asyncio.ensure_future(waker.wait(delay))
        pending: set[asyncio.Future[typing.Any]] = {wait_waker, *self._running}
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not wait_waker.done():
                wait_waker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await wait_waker

    async def _fill(self, listings: dict[str, deque[str]], listed_at: dict[str, float]) -> int:
        """Claim jobs into free slots, taking turns among the queues. Returns how many."""
        claimed = 0
        progress = not self._claims_paused()
        while progress and len(self._running) < self.concurrency and not self._stopping:
            progress = False
            for q in self.queues:
                free = self.concurrency - len(self._running)
                if free <= 0 or self._claims_paused():
                    break
                share = max(1, free // len(self.queues))
                for claim in await self._claim_some(q, share, listings[q], listed_at):
                    self._start(claim)
                    claimed += 1
                    progress = True
            # rotate so the next turn starts with another queue
            self.queues.append(self.queues.pop(0))
        return claimed

    async def _claim_some(
        self, queue: str, want: int, listing: deque[str], listed_at: dict[str, float]
    ) -> list[Claim]:
        """Up to `want` claims from the cached head listing, listing again when it runs dry."""
        for relisted in (False, True):
            now = self.clock.monotonic()
            if relisted or not listing or now - listed_at[queue] > RELIST_INTERVAL:
                if relisted and now - listed_at[queue] < self.poll_interval and not listing:
                    return []
                listing.clear()
                listing.extend(
                    await self.queue.io(
                        self.store.promote_and_list, queue, 2 * self.concurrency + 10
                    )
                )
                listed_at[queue] = now
            if self._claims_paused():  # paused while we listed (say, a publish just failed)
                return []
            if listing:
                claims = await self._claim_batch(queue, want, listing)
                if claims or self._claims_paused():
                    return claims  # or the disk is full: stop trying for now
        return []

    def _claims_paused(self) -> bool:
        """True while claims wait for disk space or after outcomes failed to publish."""
        return time.monotonic() < self._paused_until

    async def _claim_batch(self, queue: str, want: int, listing: deque[str]) -> list[Claim]:
        """
        One hop to the I/O threads that tries the listed names in order until it
        has won `want` claims. The names it tried leave the listing. If we are
        cancelled meanwhile, the claims it won are given back.
        """
        paths = list(listing)
        hop = asyncio.ensure_future(
            self.queue.io(self.store.claim_many, queue, paths, self.id, want)
        )
        try:
            claims, tried, error = await asyncio.shield(hop)
        except asyncio.CancelledError:
            hop.add_done_callback(self._give_back)
            raise
        for _ in range(tried):
            listing.popleft()
        if isinstance(error, StoreFull):  # that job is back in pending; wait for space
            if not self._claims_paused():
                logger.warning(
                    "worker %s: %s; pausing claims for %.0f s",
                    self.id,
                    printable(error),
                    FULL_PAUSE,
                )
            self._paused_until = max(self._paused_until, time.monotonic() + FULL_PAUSE)
        elif error is not None:  # the store has put that job back; the next listing retries it
            logger.error("worker %s: claiming from %s failed: %s", self.id, queue, printable(error))
        return claims

    def _give_back(self, hop: asyncio.Future[tuple[list[Claim], int, Exception | None]]) -> None:
        if hop.cancelled() or hop.exception() is not None:
            return
        claims = hop.result()[0]
        if claims:
            io_pool().submit(
                self.store.finish_many, [(c, Outcome(Ending.GIVE_BACK)) for c in claims]
            )

    async def _check_running(self) -> None:
        """Stop tasks whose job was rescued away from us, or whose cancel was requested."""
        claims = {c.job_id: (t, c) for t, c in self._running.items()}
        owned, cancels = await self.queue.io(self._running_status, list(claims))
        for job_id, (task, claim) in claims.items():
            if task.done() or task in self._stop_reasons or job_id in self._finishing:
                continue  # ended while we looked, being stopped, or publishing its outcome
            if job_id not in owned.get(claim.queue, set()):
                logger.warning(
                    "job %s was taken from worker %s (fenced): stopping it", job_id, self.id
                )
                self._stop(task, "fenced")
            elif job_id in cancels:
                logger.info("job %s: cancel requested; stopping it", job_id)
                self._stop(task, "cancel")

    def _running_status(self, job_ids: list[str]) -> tuple[dict[str, set[str]], set[str]]:
        owned = {q: self.store.owned(q, self.id) for q in self.queues}
        return owned, self.store.cancel_requested(job_ids)

    def _stop(self, task: asyncio.Task[None], reason: str) -> None:
        """
        Cancel a running attempt, recording why: "cancel" (requested), "fenced" (the
        job is someone else's now; it stays so) or "shutdown" (give the job back).
        """
        if self._stop_reasons.get(task) != "fenced":
            self._stop_reasons[task] = reason
        task.cancel()

    def _stop_asked(self) -> bool:
        """
        Whether the CancelledError the current attempt is handling was asked for by
        this worker (or by the event loop going away), not raised by the task.
        """
        task = asyncio.current_task()
        return task is not None and (task in self._stop_reasons or task.cancelling() > 0)

    def _fence_all(self, silent: float) -> None:
        """Our heartbeat has failed for 2/3 of the lease: others may rescue our jobs now."""
        for task, claim in list(self._running.items()):
            if task not in self._stop_reasons and not task.done():
                logger.error(
                    "worker %s: no heartbeat for %.1f s: giving up job %s without writing",
                    self.id,
                    silent,
                    claim.job_id,
                )
                self._stop(task, "fenced")

    def _start(self, claim: Claim) -> None:
        task = asyncio.create_task(self._execute(claim), name=f"fsjobs:{claim.job_id}")
        self._running[task] = claim
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._stop_reasons.pop(task, None)

    async def _shutdown(self) -> None:
        if self._running:
            logger.info(
                "worker %s: waiting up to %s s for %d running jobs",
                self.id,
                self.grace_period,
                len(self._running),
            )
            _, still = await asyncio.wait(list(self._running), timeout=self.grace_period)
            for task in still:
                self._stop(task, "shutdown")
            if still:
                await asyncio.wait(still)
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    def _install_signals(self) -> list[signal.Signals]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping:  # a second signal: give the running jobs back now
            logger.warning("worker %s: %s again, releasing running jobs", self.id, sig.name)
            for task in list(self._running):
                self._stop(task, "shutdown")
            return
        logger.info("worker %s: %s, finishing running jobs", self.id, sig.name)
        self.stop()

    # -- one attempt -------------------------------------------------------------

    async def _execute(self, claim: Claim) -> None:
        progress = _ProgressWriter(self.queue, claim)
        try:
            outcome = await self._attempt(claim, progress)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            reason = "shutdown" if current is None else self._stop_reasons.get(current, "shutdown")
            if reason == "fenced":  # the job is someone else's now: write nothing
                await self.queue.io(self.store.close_claim, claim)
                return
            # Cancelled on request; or the worker is stopping: give the job back
            # without using up an attempt.
            outcome = Outcome(Ending.CANCELLED if reason == "cancel" else Ending.GIVE_BACK)
        except Exception as exc:  # preparing the attempt failed (e.g. an unreadable upload)
            logger.exception("job %s could not be started", claim.job_id)
            outcome = self._retry_or_end(claim, exc, Ending.FAILED, None)
        self._finishing.add(claim.job_id)
        try:
            try:
                await progress.flush()
            except OSError as exc:  # progress is best effort: the outcome must still be recorded
                logger.warning(
                    "job %s: its last progress report was lost: %s", claim.job_id, printable(exc)
                )
            await self._publish(claim, outcome)
        except Exception as exc:  # the store has put the job back; _finish_batches backs off
            logger.error(
                "worker %s could not record the end of job %s: %s",
                self.id,
                claim.job_id,
                printable(exc),
            )
            return
        finally:
            self._finishing.discard(claim.job_id)
        if outcome.ending is not Ending.GIVE_BACK:
            self.ran += 1
        signals.finished(self.queue.root, claim.job_id)

    async def _publish(self, claim: Claim, outcome: Outcome) -> bool:
        """
        `store.finish`, batched: outcomes that arrive while a batch is being
        written go together in the next one, sharing its directory fsyncs and its
        hop to the I/O threads (a group commit). Raises what finish would.
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._to_finish.append((claim, outcome, done))
        if self._finisher is None or self._finisher.done():
            self._finisher = asyncio.create_task(self._finish_batches())
        return await done

    async def _finish_batches(self) -> None:
        while self._to_finish:
            batch, self._to_finish = self._to_finish, []
            items = [(claim, outcome) for claim, outcome, _ in batch]
            try:
                results = await self.queue.io(self.store.finish_many, items)
            except BaseException as exc:  # the loop is going away; nothing else raises here
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                raise
            self._after_publishing(results)
            for (*_, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue  # its task was cancelled meanwhile; the outcome was still written
                if isinstance(result, Exception):
                    done.set_exception(result)
                else:
                    done.set_result(result)

    def _after_publishing(self, results: Sequence[bool | Exception]) -> None:
        """
        An outcome that could not be published (a full disk, an I/O error) means
        the next attempt would likely fail the same way after running the task
        again: pause claims, longer each time in a row, until one publishes.
        """
        errors = [r for r in results if isinstance(r, Exception)]
        if not errors:
            if any(r is True for r in results):
                self._publish_backoff.succeeded()
            return
        now = time.monotonic()
        pause = self._publish_backoff.failed(now)
        if pause is None:
            return  # those jobs were claimed before the current back-off began
        self._paused_until = max(self._paused_until, now + pause)
        logger.warning(
            "worker %s could not publish the outcome of %d job(s) (%s): backing off its claims "
            "for %.0f s",
            self.id,
            len(errors),
            printable(errors[0]),
            pause,
        )

    async def _attempt(self, claim: Claim, progress: _ProgressWriter) -> Outcome:
        job = claim.job
        assert job is not None
        if claim.cancel_requested:
            return Outcome(Ending.CANCELLED)
        if not claim.runnable:
            return Outcome(Ending.FAILED, error=_EXHAUSTED[claim.exhausted_by])
        try:
            task = tasks.lookup(job.func, self.allow_import)
            task.check_kwargs(job.kwargs, uploads=claim.uploads)
        except (UnknownTask, TypeError) as exc:
            logger.error("job %s cannot run: %s", claim.job_id, printable(exc))
            return Outcome(Ending.FAILED, error=_error_info(exc))
        stop = threading.Event()
        ctx = Context(
            job_id=claim.job_id,
            attempt=claim.marker.attempt,
            max_attempts=claim.marker.max_attempts,
            queue=claim.queue,
            uploads=await self.queue.io(self.store.upload_paths, claim) if claim.uploads else {},
            output_dir_factory=functools.partial(self.store.output_dir, claim),
            progress_sink=progress.write,
            cancel_event=stop,
            loop=asyncio.get_running_loop(),
        )
        kwargs: dict[str, typing.Any] = dict(job.kwargs)
        if task.context_param is not None:
            kwargs[task.context_param] = ctx
        for name in ctx.uploads:
            if name in task.signature.parameters and name not in kwargs:
                kwargs[name] = await self.queue.io(self.store.read_upload, claim, name)
        timeout = job.effective_timeout if job.effective_timeout is not None else task.timeout
        logger.debug("job %s attempt %d starting", claim.job_id, claim.marker.attempt)
        deadline = _Deadline(timeout)
        try:
            if task.is_async:
                async with deadline.scope():
                    value = await task.fn(**kwargs)
            else:
                value = await self._run_sync(task, kwargs, deadline, stop)
        except Retry as exc:
            return self._retry_or_end(claim, exc, Ending.FAILED, exc.delay)
        except TimeoutError as exc:
            if deadline.expired:  # ours, not one the task raised for its own reasons
                expired = TimeoutError(f"the attempt exceeded its timeout of {timeout} s")
                return self._retry_or_end(claim, expired, Ending.TIMED_OUT, None)
            return self._retry_or_end(claim, exc, Ending.FAILED, None)
        except asyncio.CancelledError as exc:
            if self._stop_asked():  # ours: _execute gives the job back or cancels it
                raise
            return self._retry_or_end(claim, exc, Ending.FAILED, None)
        except GeneratorExit:
            raise  # this coroutine is being closed: nothing may be awaited any more
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: the task's failure
            return self._retry_or_end(claim, exc, Ending.FAILED, None)
        return self._completed(value)

    @staticmethod
    def _completed(value: object) -> Outcome:
        """The outcome for a returned value: stored as JSON, or failed without retry."""
        try:
            result = to_json_result(value)
            size = len(dumps(result))
        except (TypeError, ValueError, RecursionError) as exc:
            problem = ResultNotSerializable(
                f"the task returned {type(value).__name__}, which is not JSON: {exc}"
            )
        else:
            if size <= MAX_RESULT_BYTES:
                return Outcome(Ending.COMPLETED, result=result)
            problem = ResultNotSerializable(
                f"the result is {size} bytes; the limit is {MAX_RESULT_BYTES}: write large "
                "data to ctx.output_dir instead"
            )
        return Outcome(Ending.FAILED, error=_error_info(problem))

    async def _run_sync(
        self,
        task: tasks.Task[..., typing.Any],
        kwargs: dict[str, typing.Any],
        deadline: _Deadline,
        stop: threading.Event,
    ) -> typing.Any:
        loop = asyncio.get_running_loop()
        assert self._threads is not None
        call = functools.partial(_capture, functools.partial(task.fn, **kwargs))
        future = loop.run_in_executor(self._threads, call)
        try:
            async with deadline.scope():
                returned, value = await asyncio.shield(future)
        except (TimeoutError, asyncio.CancelledError):
            # A thread cannot be killed: tell the task (ctx.cancelled) and keep its
            # slot, and the job, until the function returns.
            stop.set()
            await asyncio.shield(future)
            raise
        if not returned:
            raise value
        return value

    def _retry_or_end(
        self, claim: Claim, exc: BaseException, final: Ending, delay: float | None
    ) -> Outcome:
        info = _error_info(exc)
        marker = claim.marker
        if marker.attempt < marker.max_attempts:
            job = claim.job
            assert job is not None
            if delay is None:
                delay = (job.backoff or DEFAULT_BACKOFF).delay(marker.attempt)
            retry_at = to_ms(self.clock.now()) + int(delay * 1000)
            logger.info(
                "job %s attempt %d failed (%s); retrying in %.1f s",
                claim.job_id,
                marker.attempt,
                printable(info.type),
                delay,
            )
            return Outcome(Ending.RETRY, error=info, retry_at_ms=retry_at)
        logger.warning(
            "job %s %s after %d attempts: %s",
            claim.job_id,
            final.value,
            marker.attempt,
            printable(info.message),
        )
        return Outcome(final, error=info)


def _capture(call: typing.Callable[[], typing.Any]) -> tuple[bool, typing.Any]:
    """
    Run a sync task in its thread: (True, its value) or (False, what it raised).
    Whatever it raises, SystemExit and CancelledError included, comes back as a
    value, so it fails the attempt instead of being taken for the event loop's own.
    """
    try:
        return True, call()
    except BaseException as exc:
        return False, exc


class ClaimBackoff:
    """
    How long a worker stops claiming after outcomes could not be published:
    `PUBLISH_BACKOFF_FIRST` seconds, doubling each time claiming resumes and
    publishing fails again, up to `PUBLISH_BACKOFF_MAX`; back to the start once
    an outcome was published.
    """

    def __init__(self) -> None:
        self.current = 0.0
        self.until = -math.inf

    def failed(self, now: float) -> float | None:
        """
        A publish failed at `now` (monotonic): the pause to begin, or None during
        a pause (the job was claimed before it began: no new evidence).
        """
        if now < self.until:
            return None
        self.current = min(max(2 * self.current, PUBLISH_BACKOFF_FIRST), PUBLISH_BACKOFF_MAX)
        self.until = now + self.current
        return self.current

    def succeeded(self) -> None:
        self.current, self.until = 0.0, -math.inf


class _Heartbeat(threading.Thread):
    """
    Bumps the worker's heartbeat counter every `interval` seconds from its own
    thread, so a busy event loop is not mistaken for a frozen worker. Remembers
    when the last beat that reached the disk *started*: the worker fences
    itself when that is too long ago (DESIGN.md §4.5).
    """

    def __init__(self, store: Store, fd: int, interval: float) -> None:
        super().__init__(name="fsjobs-heartbeat", daemon=True)
        self.store = store
        self.fd = fd
        self.interval = interval
        self.last_ok = time.monotonic()
        self._done = threading.Event()

    def run(self) -> None:
        counter = 0
        while not self._done.wait(self.interval):
            counter += 1
            started = time.monotonic()
            try:
                self.store.beat(self.fd, counter)
            except OSError:
                logger.exception("heartbeat failed")
                continue
            self.last_ok = started

    def silent_for(self) -> float:
        return time.monotonic() - self.last_ok

    def stop(self) -> None:
        self._done.set()
        self.join()


class _Deadline:
    """An attempt's timeout, remembering whether it was the one that fired."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._scope: asyncio.Timeout | None = None

    def scope(self) -> asyncio.Timeout:
        self._scope = asyncio.timeout(self.seconds)
        return self._scope

    @property
    def expired(self) -> bool:
        return self._scope is not None and self._scope.expired()


class _ProgressWriter:
    """Coalesces progress reports: at most one journal write per interval, the last one kept."""

    def __init__(self, queue: Queue, claim: Claim) -> None:
        self.queue = queue
        self.claim = claim
        self.last_write = -math.inf
        self.pending: tuple[float | None, str | None] | None = None

    async def write(self, percent: float | None, message: str | None) -> None:
        self.pending = (percent, message)
        now = self.queue.clock.monotonic()
        if now - self.last_write >= PROGRESS_INTERVAL:
            await self.flush()

    async def flush(self) -> None:
        if self.pending is not None:
            percent, message = self.pending
            self.pending = None
            self.last_write = self.queue.clock.monotonic()
            await self.queue.io(self.queue.store.progress, self.claim, percent, message)
