"""
DESIGN.md section 6 workloads, measured beside their baselines in one run.

    python benchmarks/bench.py [--quick] [--only w1,...] [--dir DIR [--dir-b DIR_B]]
                               [--json FILE] [--plot [PNG]] [--jobs N] [--repeat N]

Absolute numbers on a shared machine are noisy, so every figure is given as a
ratio to a baseline measured in the same run, on the same directory:

* the limit queue (benchmarks/limitq.py): what this disk can do for a durable
  queue with no features, and the same without fsync;
* huey's FileHuey (benchmarks/hueyq.py), the existing file-based queue, when
  huey is installed (``nox -s bench`` installs it; else its rows are marked);
* fsjobs itself, for push_many against push, 2 workers against 1, and a
  backlog against an empty store.

Workloads: W1 push, W2 drain (rates.py), W3 pickup latency and idle CPU
(pickup.py), W4 backlog (backlog.py), W5 push latency under load (stream.py),
W6 jobs submitted over HTTP to ``fsjobs serve`` beside direct pushes (submit.py).
The table goes to stdout, all samples to --json (default
benchmarks/results/latest.json, not committed), the W4 sweep to a PNG with
--plot (default docs/performance-backlog.png). docs/performance.md explains
the figures.
"""

from __future__ import annotations

import pathlib
import sys

if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
    from benchmarks.run import main

    sys.exit(main(doc=__doc__ or ""))
