"""
`Worker`: claims jobs from one or more queues and runs them.

Async tasks run on the event loop; sync tasks run in a thread pool of the
worker's concurrency, or in its pool of child processes (the process executor;
see `_attempt`). The worker holds an OFD lock on ``workers/<id>.lock`` for
its whole life; any other worker that can take that lock knows this one is dead
and puts its running jobs back (see `Store.rescue`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import signal
import threading
import time
import typing
from collections.abc import Mapping, Sequence

from . import _capture, _ids, _names, _periodic_runner
from ._attempt import ProgressWriter, Runner
from ._claimer import Claimer
from ._clock import Clock, to_ms
from ._gate import Gate
from ._inotify import Watcher
from ._pacing import Heartbeat, Publisher, concurrency_of
from ._text import printable
from ._wakeups import Wakeable, Waker, io_pool, signals
from .doctor import mount_problems
from .queue import Queue
from .store import Claim, Ending, Outcome

logger = logging.getLogger(__name__)

#: the longest an idle worker waits between looks at its queues, by filesystem
IDLE_POLL_LOCAL = 0.5
IDLE_POLL_NETWORK = 0.1


class Worker:
    """
    Runs jobs of `queues` (default: the queue's own) under the queue's root,
    at most `concurrency` at a time (default 10).

    `queues` is a list of names, or a mapping name -> the most jobs of that queue
    this worker runs at once (``{"default": 10, "video": 2}``); `concurrency`
    still caps the total, and defaults to the mapping's sum.

    `executor` is where sync tasks that name no executor run: ``"thread"`` (the
    default) or ``"process"`` (a pool of at most `concurrency` child processes).

    With `handle_signals` (``fsjobs worker`` sets it), `run()` in the main thread
    handles SIGTERM and SIGINT: the first stops claiming and lets running jobs
    finish within `grace_period`; a second releases them at once. Without it the
    worker installs no signal handler: the application decides.

    `run()` also keeps the periodic schedules registered for its root (unless
    `periodic` is False), and every worker honours its queues' pause and caps.
    """

    def __init__(
        self,
        queue: Queue,
        queues: Sequence[str] | Mapping[str, int] | None = None,
        concurrency: int | None = None,
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
        executor: str = "thread",
        periodic: bool = True,
    ) -> None:
        self.queue = queue
        self.store = queue.store
        #: the most running jobs of each queue (a mapping's), and of all of them
        self.queue_limits, self.concurrency = concurrency_of(queues, concurrency)
        if executor not in ("thread", "process"):
            raise ValueError(f"a worker's executor is 'thread' or 'process', not {executor!r}")
        self.executor = executor
        self.queues = [_names.check_name("queue", q) for q in (queues or [queue.name])]
        self.clock = clock or queue.clock
        self.id = _names.check_worker_id(worker_id or _ids.new_worker_id())
        self.poll_interval = poll_interval
        #: None until the worker starts: it depends on the filesystem (read off the event loop)
        self.max_poll_interval = max_poll_interval
        self.rescue_interval = rescue_interval
        if not lease > 0:
            raise ValueError("lease must be positive")
        self.lease = lease
        self.grace_period = grace_period
        self.allow_import = tuple(allow_import)
        self.handle_signals = handle_signals
        self.periodic = periodic
        self._gate = Gate(self.store, self.id, self.clock)
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: dict[asyncio.Task[None], Claim] = {}
        self._running_in: dict[str, int] = dict.fromkeys(self.queues, 0)
        #: why a running task was cancelled: "cancel" or "fenced" (otherwise: shutdown)
        self._stop_reasons: dict[asyncio.Task[None], str] = {}
        self._finishing: set[str] = set()
        self._claimer = Claimer(
            queue,
            self.id,
            self.queues,
            self.queue_limits,
            self._gate,
            clock=self.clock,
            poll_interval=poll_interval,
            listing_size=2 * self.concurrency + 10,
        )
        self._publisher = Publisher(self.queue, self.id, self._claimer.pause)
        self._heartbeat: Heartbeat | None = None
        self._runner: Runner | None = None
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
        backoffs (at most `max_wait` seconds). Returns the attempts it ran. While
        the disk is full, or outcomes cannot be published, it waits; once outcomes
        have failed to publish for minutes it raises `PublishFailed` instead.
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
        self._runner = runner = Runner(
            self.queue,
            self.clock,
            self.allow_import,
            self._threads,
            executor=self.executor,
            processes=self.concurrency,
            lease=self.lease,
            heartbeat_age=self._heartbeat_age,
        )
        self._waker = waker = Waker()
        signals.on_push(self.queue.root, nudge := self._gate.nudger(waker))
        lock_fd, hb_fd = await self.queue.io(self.store.register_worker, self.id)
        if self.max_poll_interval is None:
            # Another host's push rings no inotify bell here: on a network
            # filesystem an idle worker keeps looking every 100 ms.
            network = await self.queue.io(lambda: self.store.staleness > 0)
            self.max_poll_interval = IDLE_POLL_NETWORK if network else IDLE_POLL_LOCAL
        self._heartbeat = heartbeat = Heartbeat(self.store, hb_fd, self.lease / 6, runner.beat)
        heartbeat.start()
        _capture.install()
        keeper = _periodic_runner.start(
            self.queue, self.id, self.clock, self.periodic and not until_empty
        )
        bell = await self.queue.io(self.store.watch, self.queues)
        if bell is not None:
            asyncio.get_running_loop().add_reader(bell.fd, self._on_bell, bell, nudge)
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
        last_rescue = last_check = -math.inf
        check_interval = min(0.5, self.lease / 6)
        delay = self.poll_interval
        try:
            while not self._stopping:
                now = self.clock.monotonic()
                if now - last_rescue >= self.rescue_interval:
                    for q in self.queues:
                        await self.queue.io(self._gate.rescue, q, self.lease)
                    # dependency checks and workflow pushes whose actor died
                    await self.queue.io(self.store.sweep, self.queues)
                    last_rescue = now
                if self._running and time.monotonic() - last_check >= check_interval:
                    await self._check_running()
                    last_check = time.monotonic()
                silent = heartbeat.silent_for()
                if silent > 2 * self.lease / 3:
                    self._fence_all(silent)
                claimed = 0 if silent > self.lease / 2 else await self._fill()
                if until_empty and not claimed and not self._running:
                    if self._claimer.paused():  # not empty: due jobs wait for the pause to end
                        if self._publisher.failing is not None and self._publisher.hopeless:
                            raise self._publisher.failing  # outcomes cannot be recorded here
                        await waker.wait(self._claimer.pause_left())
                        continue
                    if any(self._gate.held_back(q) for q in self.queues):  # caps: due jobs wait
                        await waker.wait(self._gate.wake_in() or self._longest_poll)
                        continue
                    pause = await self._idle_pause(wait_scheduled, max_wait, started)
                    if pause is None:
                        break
                    await waker.wait(pause)
                    continue
                delay = self.poll_interval if claimed else min(delay * 2, self._longest_poll)
                if claimed and len(self._running) < self.concurrency:
                    continue
                await self._wait_for_change(waker, min(delay, self._gate.wake_in() or delay))
        finally:
            await _periodic_runner.stop(keeper)
            if bell is not None:
                asyncio.get_running_loop().remove_reader(bell.fd)
                bell.close()
            try:
                await self._shutdown()
            finally:
                _capture.uninstall()
                # Only now: a second signal during the grace period releases the jobs.
                for sig in installed:
                    asyncio.get_running_loop().remove_signal_handler(sig)
            await self.queue.io(heartbeat.stop)
            await self.queue.io(self._gate.free_leftovers)
            await self.queue.io(self.store.unregister_worker, self.id, lock_fd, hb_fd)
            self._waker = self._heartbeat = None

    @staticmethod
    def _on_bell(bell: Watcher, waker: Wakeable) -> None:
        """A job landed in a watched directory (pushed by another process on this host)."""
        bell.drain()
        waker.wake()

    async def _idle_pause(
        self, wait_scheduled: bool, max_wait: float | None, started: float
    ) -> float | None:
        """How long an emptied `run_until_empty` should wait for a scheduled job; None: stop."""
        if not wait_scheduled:
            return None
        due = [
            await self.queue.io(self.store.next_due_ms, q)
            for q in self.queues
            if not self._gate.paused(q)  # a paused queue counts as empty
        ]
        due_ms = min((d for d in due if d is not None), default=None)
        if due_ms is None:
            return None
        pause = max(0.0, (due_ms - to_ms(self.clock.now())) / 1000)
        if max_wait is not None:
            left = max_wait - (self.clock.monotonic() - started)
            if left <= 0 or pause > left:
                return None
        return min(pause + 0.001, self._longest_poll)

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

    @property
    def _longest_poll(self) -> float:
        assert self.max_poll_interval is not None  # set when the worker starts
        return self.max_poll_interval

    async def _fill(self) -> int:
        """Claim jobs into free slots and start them. Returns how many."""
        return await self._claimer.fill(
            lambda: self.concurrency - len(self._running),
            self._running_in,
            self._start,
            lambda: self._stopping,
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
        self._running_in[claim.queue] += 1
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        claim = self._running.pop(task, None)
        if claim is not None:
            self._running_in[claim.queue] -= 1
        self._stop_reasons.pop(task, None)
        if claim is not None and self._gate.holds_slot(claim):  # ended, however: free its slot
            io_pool().submit(self._gate.release, claim)

    def _heartbeat_age(self) -> float:
        return 0.0 if self._heartbeat is None else self._heartbeat.silent_for()

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
        if self._runner is not None:
            await self._runner.close()
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
        assert self._runner is not None
        progress = ProgressWriter(self.queue, claim)
        try:
            outcome = await self._runner.run(claim, progress, self._stop_asked)
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
            outcome = self._runner.retry_or_end(claim, exc, Ending.FAILED, None)
        self._finishing.add(claim.job_id)
        try:
            try:
                await progress.flush()
            except OSError as exc:  # progress is best effort: the outcome must still be recorded
                logger.warning(
                    "job %s: its last progress report was lost: %s", claim.job_id, printable(exc)
                )
            await self._publisher.publish(claim, outcome)
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
