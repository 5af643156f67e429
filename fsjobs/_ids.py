"""
Job and worker ids.

A job id is 22 characters of lowercase Crockford base32: 10 for the push time in
milliseconds, 4 for a per-process counter, 8 random. The alphabet is in ASCII
order, so byte order of ids is numeric order and ids pushed by one process sort
in push order even within one millisecond, and even if the wall clock steps
back a little: the time part does not decrease within a process. After a step
back of more than an hour it follows the clock again (ids would otherwise carry
a wrong time, and land in the wrong day shard, for that long).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ID_LENGTH = 22
ID_RE = re.compile(rf"^[{ALPHABET}]{{{ID_LENGTH}}}$")
WORKER_ID_RE = re.compile(r"^[a-z0-9-]{1,64}$")

MAX_STEP_BACK_MS = 3_600_000
_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _b32_decode(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 32 + ALPHABET.index(ch)
    return value


def new_job_id(now_ms: int) -> str:
    """A fresh, time-ordered job id for a push at `now_ms`."""
    global _last_ms, _counter
    with _lock:
        if now_ms > _last_ms or now_ms < _last_ms - MAX_STEP_BACK_MS:
            _last_ms, _counter = now_ms, 0
        else:
            _counter += 1
            if _counter >= 32**4:  # more than a million ids in one ms: borrow the next ms
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    return _b32(ms, 10) + _b32(counter, 4) + _b32(secrets.randbits(40), 8)


def id_time_ms(job_id: str) -> int:
    """The push time encoded in a job id."""
    return _b32_decode(job_id[:10])


def is_job_id(text: str) -> bool:
    return bool(ID_RE.fullmatch(text))


def new_worker_id() -> str:
    """`<host>-<pid>-<random>`: only ``[a-z0-9-]``, so it fits in a marker name."""
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:32]
    return f"{host or 'host'}-{os.getpid()}-{_b32(secrets.randbits(30), 6)}"
