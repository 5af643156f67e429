"""The command line of benchmarks/bench.py: which workloads, where, and the output."""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import time
import typing

from benchmarks.common import REPO, Samples, Settings, log

WORKLOADS = ("w1", "w2", "w3", "w4", "w5", "w6")
DEFAULT_JSON = REPO / "benchmarks" / "results" / "latest.json"
DEFAULT_PLOT = REPO / "docs" / "performance-backlog.png"


def parse(argv: list[str] | None, doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: about a minute")
    parser.add_argument("--jobs", type=int, help="W1/W2 jobs (default 10,000; quick 1,500)")
    parser.add_argument("--repeat", type=int, help="runs per figure, median (default 3; quick 1)")
    parser.add_argument("--backlog", type=int, help="W4 backlog (default 100,000; quick 5,000)")
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help="e.g. w3 or w1,w4 (w1 and w2 run together)"
    )
    parser.add_argument("--dir", help="where to make the queues (default: a temp dir)")
    parser.add_argument(
        "--dir-b", help="the --dir directory through a second mount: W3's worker uses it"
    )
    parser.add_argument(
        "--json", default=str(DEFAULT_JSON), help="results file (default: %(default)s)"
    )
    parser.add_argument(
        "--plot", nargs="?", const=str(DEFAULT_PLOT), help="draw the W4 sweep (default: %(const)s)"
    )
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(WORKLOADS)
    if unknown:
        parser.error(f"--only: unknown workloads {sorted(unknown)}")
    return args


def machine(base: pathlib.Path) -> dict[str, typing.Any]:
    """What the figures depend on, and which code they measured."""

    def cmd(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, cwd=REPO).stdout.strip()

    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "filesystem": cmd("df", "--output=fstype", str(base)).split()[-1],
        "commit": cmd("git", "rev-parse", "--short", "HEAD"),
        "fsjobs_uncommitted": bool(cmd("git", "status", "--porcelain", "--", "fsjobs")),
    }


def main(argv: list[str] | None = None, doc: str = "") -> int:
    args = parse(argv, doc)
    base = pathlib.Path(tempfile.mkdtemp(prefix="fsjobs-bench-", dir=args.dir))
    stamps = pathlib.Path(tempfile.mkdtemp(prefix="fsjobs-bench-stamps-"))
    base_b = pathlib.Path(args.dir_b) / base.name if args.dir_b else None
    sizes = {"jobs": args.jobs, "repeat": args.repeat, "backlog": args.backlog}
    s = Settings.make(args.quick, sizes, base=base, base_b=base_b, stamps=stamps)
    info = machine(base)
    info["load_before"] = os.getloadavg()[0]  # other work on the machine skews everything
    os.environ["FSJOBS_ROOT"] = str(base / "tasks")  # for benchmarks.noop's own queue
    samples, seconds = Samples(), {}
    try:
        seconds = _measure(set(args.only.split(",")), s, samples)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(stamps, ignore_errors=True)
    info["load_after"] = os.getloadavg()[0]
    return _report(args, s, samples, seconds, info)


def _measure(only: set[str], s: Settings, samples: Samples) -> dict[str, float]:
    """Run the chosen workloads; the seconds each took."""
    from benchmarks import backlog, pickup, rates, stream, submit  # noop: after FSJOBS_ROOT

    steps = (("w1,w2", rates), ("w3", pickup), ("w4", backlog), ("w5", stream), ("w6", submit))
    seconds = {}
    for names, module in steps:
        if only & set(names.split(",")):
            log(f"{names}: measuring…")
            began = time.monotonic()
            module.measure(s, samples)
            seconds[names] = round(time.monotonic() - began, 1)
            log(f"{names}: {seconds[names]:.0f} s")
    return seconds


def _header(s: Settings, seconds: dict[str, float], info: dict[str, typing.Any]) -> str:
    """The sizes of the workloads that ran, where, which code, and how busy the machine was."""
    sizes = {
        "w1,w2": f"W1/W2 {s.jobs:,} jobs, median of {s.repeat}",
        "w3": f"W3 {s.pickups} pickups",
        "w4": f"W4 {s.backlog_jobs:,} jobs beside a {s.backlog:,} backlog, median of {s.repeat}",
        "w5": f"W5 {s.stream:,} pushes",
        "w6": f"W6 {s.submits:,} submits per arm, median of {s.repeat}",
    }
    parts = [f"{'quick' if s.quick else 'full'} run"] + [sizes[k] for k in seconds]
    parts.append(f"{info['filesystem']} under {s.base.parent}")
    dirty = " + uncommitted fsjobs/ changes" if info["fsjobs_uncommitted"] else ""
    parts.append(f"commit {info['commit']}{dirty}")
    parts.append(f"load average {info['load_before']:.1f} before, {info['load_after']:.1f} after")
    parts.append("seconds " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    return "; ".join(parts)


def _report(
    args: argparse.Namespace,
    s: Settings,
    samples: Samples,
    seconds: dict[str, float],
    info: dict[str, typing.Any],
) -> int:
    from benchmarks import hueyq, report

    medians = samples.medians()
    notes = {} if hueyq.installed() else {"huey": "not installed"}
    rows = report.build(medians, notes, s.backlog)
    print("\n" + _header(s, seconds, info) + "\n")
    print(report.markdown(rows))
    report.write_json(
        pathlib.Path(args.json),
        machine=info,
        settings={k: str(v) for k, v in vars(s).items()},
        seconds=seconds,
        medians=medians,
        samples=samples.values,
        rows=rows,
    )
    print(f"\nresults: {args.json}")
    if args.plot and "w4" in args.only:
        if importlib.util.find_spec("matplotlib") is None:
            print("plot: skipped, matplotlib is not installed (nox -s bench installs it)")
        else:
            report.plot(medians, s, pathlib.Path(args.plot))
            print(f"plot: {args.plot}")
    return 0
