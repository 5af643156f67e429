"""
Counts per queue and status, as ``fsjobs stats``, ``GET /stats`` and
``GET /metrics`` show them: gathered in one pass over the store, and written
out in the Prometheus text format.
"""

from __future__ import annotations

import attrs

from ._clock import to_ms
from .states import JobStatus, QueueInfo
from .store import Store


@attrs.frozen
class QueueStats:
    """
    One queue: how many jobs are in each status, how long the oldest due job has
    waited, and its flow control.
    """

    #: every status, zeros included
    counts: dict[JobStatus, int]
    #: seconds since the oldest pending job became due; None when none is pending
    oldest_pending_s: float | None
    #: paused, and its caps (concurrency, rate)
    info: QueueInfo = attrs.Factory(QueueInfo)
    #: why its settings file cannot be used (its workers then claim nothing); None if it can
    settings_problem: str | None = None

    def describe_flow(self) -> str:
        """``paused``, ``concurrency=2``, ``rate=10/s``, as words (empty when none)."""
        words = ["paused"] if self.info.paused else []
        if self.info.concurrency is not None:
            words.append(f"concurrency={self.info.concurrency}")
        if self.info.rate is not None:
            words.append(f"rate={self.info.rate}")
        if self.settings_problem is not None:
            words.append("settings unusable")
        return " ".join(words)


@attrs.frozen
class Stats:
    """Every queue under a root, and how many workers hold their lock file."""

    queues: dict[str, QueueStats]
    workers_alive: int


def collect(store: Store) -> Stats:
    """Read the counts of every queue (blocking: run it in the I/O threads)."""
    now_ms = to_ms(store.clock.now())
    queues = {}
    for name in store.queues():
        oldest = store.oldest_pending_ms(name)
        flow = store.flow(name, max_age=0)
        rate = flow.settings.rate
        queues[name] = QueueStats(
            counts=store.counts(name),
            oldest_pending_s=None if oldest is None else max(0, now_ms - oldest) / 1000,
            info=QueueInfo(
                flow.paused, flow.settings.concurrency, None if rate is None else str(rate)
            ),
            settings_problem=flow.problem,
        )
    return Stats(queues, store.workers_alive())


def prometheus(stats: Stats) -> str:
    """The Prometheus text exposition format (version 0.0.4). Queue names need no escaping."""
    lines = [
        "# HELP fsjobs_jobs Jobs by queue and status.",
        "# TYPE fsjobs_jobs gauge",
    ]
    for name, info in stats.queues.items():
        for status in JobStatus:
            lines.append(
                f'fsjobs_jobs{{queue="{name}",status="{status.value}"}} '
                f"{info.counts.get(status, 0)}"
            )
    lines += [
        "# HELP fsjobs_oldest_pending_seconds How long the oldest due job has waited.",
        "# TYPE fsjobs_oldest_pending_seconds gauge",
    ]
    for name, info in stats.queues.items():
        age = info.oldest_pending_s or 0
        lines.append(f'fsjobs_oldest_pending_seconds{{queue="{name}"}} {age}')
    lines += [
        "# HELP fsjobs_queue_paused 1 while the queue is paused.",
        "# TYPE fsjobs_queue_paused gauge",
    ]
    for name, info in stats.queues.items():
        lines.append(f'fsjobs_queue_paused{{queue="{name}"}} {int(info.info.paused)}')
    lines += [
        "# HELP fsjobs_workers_alive Workers holding their lock file.",
        "# TYPE fsjobs_workers_alive gauge",
        f"fsjobs_workers_alive {stats.workers_alive}",
    ]
    return "\n".join(lines) + "\n"
