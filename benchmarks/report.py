"""
The table: every figure beside its baseline, the ratio, and DESIGN.md section 6's
target, marked met or missed. Also the JSON file and the backlog plot.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import typing

from benchmarks import backlog
from benchmarks.common import Settings

Medians = dict[str, float]


@dataclasses.dataclass(frozen=True)
class Target:
    """A bound from DESIGN.md section 6, on the ratio to the baseline or on the value."""

    op: str  # ">=", "<=" or "<"
    bound: float
    on: str = "ratio"  # or "value"
    text: str = ""

    def check(self, value: float | None, ratio: float | None) -> bool | None:
        x = ratio if self.on == "ratio" else value
        if x is None:
            return None
        return {">=": x >= self.bound, "<=": x <= self.bound, "<": x < self.bound}[self.op]

    def describe(self) -> str:
        return self.text or f"{self.op.replace('>=', '≥').replace('<=', '≤')} {self.bound:g}"


@dataclasses.dataclass(frozen=True)
class Row:
    workload: str
    figure: str
    value: str  # formatted; "-" or why, if not measured
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None  # None: no target, or not measured


def fmt(value: float, unit: str) -> str:
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit in ("ms", "%"):
        return f"{value:.2f} {unit}"
    return f"{value:,.0f} {unit}".rstrip()


class Table:
    """Builds the rows from the medians; a missing key means 'not measured'."""

    def __init__(self, m: Medians, notes: dict[str, str]) -> None:
        self.m = m
        self.notes = notes  # system ("huey") -> why it was not measured
        self.rows: list[Row] = []

    def text(self, key: str, unit: str) -> str:
        if key in self.m:
            return fmt(self.m[key], unit)
        return self.notes.get(key.split(".")[1], "-")

    def add(
        self,
        workload: str,
        figure: str,
        key: str,
        unit: str,
        base: tuple[str, str] | None = None,
        target: Target | None = None,
        detail: str = "",
    ) -> None:
        """One figure; `base` = (label, key) of the baseline it is divided by."""
        value, ratio, baseline = self.m.get(key), None, ""
        if base is not None:
            label, base_key = base
            baseline = f"{label} ({self.text(base_key, unit)})"
            if value is not None and self.m.get(base_key):
                ratio = value / self.m[base_key]
        text = self.text(key, unit) + (f" ({detail})" if detail and value is not None else "")
        met = target.check(value, ratio) if target else None
        describe = target.describe() if target else ""
        self.rows.append(Row(workload, figure, text, baseline, ratio, describe, met))

    def latency(
        self,
        workload: str,
        figure: str,
        key: str,
        base: tuple[str, str] | None = None,
        p50_at_most: float | None = None,
        target: Target | None = None,
    ) -> None:
        """p50, the figure a target is set for, with p95 and p99 beside it."""
        tail = [f"{p} {self.m[f'{key}.{p}']:.2f}" for p in ("p95", "p99") if f"{key}.{p}" in self.m]
        if p50_at_most is not None:
            target = Target("<=", p50_at_most, on="value", text=f"p50 ≤ {p50_at_most:g} ms")
        self.add(workload, figure, f"{key}.p50", "ms", base, target, ", ".join(tail))


def build(m: Medians, notes: dict[str, str], backlog: int) -> list[Row]:
    t = Table(m, notes)
    _w1(t)
    _w2(t)
    _w3(t)
    _w4(t, backlog)
    _w5(t)
    _w6(t)
    return [r for r in t.rows if r.value != "-"]


def _w1(t: Table) -> None:
    w, durable = "W1 push", ("limit, durable", "w1.limit.push")
    t.add(w, "limit queue, durable", "w1.limit.push", "/s")
    t.add(w, "limit queue, no fsync", "w1.limit_nofsync.push", "/s", durable)
    nofsync = ("limit, no fsync", "w1.limit_nofsync.push")
    t.add(w, "FileHuey (does no fsync)", "w1.huey.push", "/s", nofsync)
    t.add(w, "fsjobs push", "w1.fsjobs.push", "/s", durable, Target(">=", 0.6))
    single = ("fsjobs push", "w1.fsjobs.push")
    for batch in (100, 1000):
        key = f"w1.fsjobs.push_many{batch}"
        t.add(w, f"fsjobs push_many({batch}), per job", key, "/s", single)
    # DESIGN.md §6: push_many(1000) per job against the limit queue's single durable push
    key = "w1.fsjobs.push_many1000"
    t.add(w, "fsjobs push_many(1000), per job", key, "/s", durable, Target(">=", 5))


def _w2(t: Table) -> None:
    w, one = "W2 drain", ("limit, 1 process", "w2.limit.drain1")
    t.add(w, "limit queue, 1 process, durable", "w2.limit.drain1", "/s")
    t.add(w, "limit queue, 1 process, no fsync", "w2.limit_nofsync.drain1", "/s", one)
    t.add(w, "limit queue, 2 processes", "w2.limit.drain2", "/s", one)
    t.add(w, "FileHuey, 1 process, 10 threads", "w2.huey.drain1", "/s")
    t.add(w, "fsjobs, 1 process", "w2.fsjobs.drain1", "/s", one, Target(">=", 0.6))
    huey = ("FileHuey", "w2.huey.drain1")
    t.add(w, "fsjobs, 1 process", "w2.fsjobs.drain1", "/s", huey, Target(">=", 3))
    # 1.6x, or as well as the limit queue scales on this disk if it scales less
    limit = t.m.get("w2.limit.drain2", 0.0) / t.m.get("w2.limit.drain1", 1.0)
    scaling = Target(">=", min(1.6, limit or 1.6), text=f"≥ 1.6 or limit's {limit:.2f}")
    fs_one = ("fsjobs, 1 process", "w2.fsjobs.drain1")
    t.add(w, "fsjobs, 2 processes", "w2.fsjobs.drain2", "/s", fs_one, scaling)


def _w3(t: Table) -> None:
    w, limit = "W3 pickup", ("limit, 10 ms poll", "w3.limit.p50")
    t.latency(w, "limit queue, other process", "w3.limit")
    t.latency(w, "fsjobs, same process", "w3.same", p50_at_most=2)
    t.latency(w, "fsjobs, other process", "w3.other", limit, p50_at_most=5)
    t.latency(w, "fsjobs, other mount (--dir-b)", "w3.mount", p50_at_most=100)
    idle = ("limit, 10 ms poll", "w3.limit.idle_cpu")
    under = Target("<", 2, on="value", text="< 2 %")
    t.add(w, "idle worker CPU, % of a core", "w3.other.idle_cpu", "%", idle, under)


def _w4(t: Table, backlog: int) -> None:
    w, size, empty = "W4 backlog", f"{backlog // 1000}k", "w4.ahead.0"
    kinds = (("other", "in another queue"), ("ahead", "scheduled ahead"))
    for arm, label in (("live", "push+drain"), ("drain", "drain")):
        base = ("empty store", f"{empty}.{arm}")
        t.add(w, f"fsjobs {label}, empty store", f"{empty}.{arm}", "/s")
        for kind, text in kinds:
            key = f"w4.{kind}.{backlog}.{arm}"
            t.add(w, f"fsjobs {label}, {size} {text}", key, "/s", base, Target(">=", 0.8))
    # "worker memory does not grow with the backlog": read as within 10 %
    rss = ("empty store", f"{empty}.live_rss")
    t.add(w, "worker peak RSS, empty store", f"{empty}.live_rss", "MB")
    for kind, text in kinds:
        key = f"w4.{kind}.{backlog}.live_rss"
        t.add(w, f"worker peak RSS, {size} {text}", key, "MB", rss, Target("<=", 1.1))
    t.add(w, "limit drain, empty store", "w4.limit.0.drain", "/s")
    base = ("empty store", "w4.limit.0.drain")
    t.add(w, f"limit drain, {size} scheduled ahead", f"w4.limit.{backlog}.drain", "/s", base)


def _w5(t: Table) -> None:
    w = "W5 push latency"
    for system in ("fsjobs", "limit"):
        key = f"{system}.push_latency"
        t.latency(w, f"{system}, no worker (W1)", f"w1.{key}")
        alone = ("no worker", f"w1.{key}.p50")
        target = Target("<=", 1.5) if system == "fsjobs" else None
        t.latency(w, f"{system}, 2 workers draining", f"w5.{key}", alone, target=target)
    # pushes made while workers run (W3, W4, W5) that raised, and were tried again
    none = Target("<=", 0, on="value", text="0")
    t.add("W3-W5", "fsjobs pushes that failed, workers running", "errors.push", "", None, none)


def _w6(t: Table) -> None:
    w = "W6 HTTP submit"
    for flight in (1, 16):
        push = (f"push, {flight} in flight", f"w6.push.submit{flight}")
        t.add(w, f"fsjobs push, {flight} in flight", f"w6.push.submit{flight}", "/s")
        t.add(w, f"POST /jobs/{{task}}, {flight} in flight", f"w6.http.submit{flight}", "/s", push)
        t.latency(w, f"push latency, {flight} in flight", f"w6.push.submit{flight}_latency")
        base = ("push", f"w6.push.submit{flight}_latency.p50")
        t.latency(w, f"POST latency, {flight} in flight", f"w6.http.submit{flight}_latency", base)
        cpu = ("push, in its process", f"w6.push.submit{flight}_server_cpu")
        key = f"w6.http.submit{flight}_server_cpu"
        t.add(w, f"server CPU per POST, {flight} in flight", key, "ms", cpu)
    none = Target("<=", 0, on="value", text="0")
    t.add(w, "POSTs that got no answer and were sent again", "errors.http", "", None, none)


# -- output ---------------------------------------------------------------------------


def markdown(rows: list[Row]) -> str:
    lines = [
        "| workload | figure | value | baseline | ratio | target | |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        status = {True: "met", False: "**missed**", None: ""}[r.met]
        cells = (r.workload, r.figure, r.value, r.baseline, ratio, r.target, status)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: pathlib.Path, **content: typing.Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    content["rows"] = [dataclasses.asdict(r) for r in content.get("rows", [])]
    path.write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")


def plot(m: Medians, s: Settings, path: pathlib.Path) -> None:
    """
    Throughput of due jobs against the size of a scheduled-ahead backlog
    (matplotlib, imported only here). Log scale: the limit queue is ~10x fsjobs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = backlog.sizes(s)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    lines = (
        ("fsjobs drain (1 worker process)", "w4.ahead.{}.drain", "o-"),
        ("fsjobs push+drain (live worker)", "w4.ahead.{}.live", "s-"),
        ("limit queue drain (durable)", "w4.limit.{}.drain", "^--"),
    )
    x = range(len(sizes))
    for label, key, style in lines:
        ys = [m.get(key.format(b), float("nan")) for b in sizes]
        ax.plot(x, ys, style, label=label)
    other = m.get(f"w4.other.{s.backlog}.drain")
    if other is not None:
        ax.plot([len(sizes) - 1], [other], "D", label="fsjobs drain, backlog in another queue")
    ax.set_xticks(list(x), [f"{b:,}" for b in sizes])
    ax.set_xlabel("jobs scheduled a year ahead in the same queue")
    ax.set_ylabel(f"jobs/s ({s.backlog_jobs:,} due jobs, median of {s.repeat})")
    ax.set_yscale("log")
    ax.set_title("Throughput of due jobs beside a backlog")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
