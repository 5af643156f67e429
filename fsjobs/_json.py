"""
Strict JSON, the only serialisation fsjobs uses (never pickle).

Readers reject NaN/Infinity and duplicate keys and survive deep nesting; writers
emit compact, ASCII-only, single-line JSON. No fsjobs imports: everything else
builds on this.
"""

from __future__ import annotations

import json
import typing

JSON: typing.TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
MAX_DEPTH = 100


def _reject_constant(name: str) -> typing.NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, JSON]]) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)


def loads(text: str | bytes) -> JSON:
    """Strict JSON: no NaN/Infinity, no duplicate keys, no stack overflow (ValueError)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value: JSON = _DECODER.decode(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    return value


def dumps(value: object) -> str:
    """Compact, ASCII-only JSON (one line, no NaN); raises ValueError/TypeError otherwise."""
    return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def check_plain(value: object, depth: int = 0) -> None:
    """
    Raise TypeError/ValueError unless `value` is made only of dicts with str keys,
    lists, str, int, finite float, bool and None, nested at most MAX_DEPTH deep.
    (``json.dumps`` alone would turn ``{1: "a"}`` into ``{"1": "a"}`` silently.)
    """
    if depth > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} is not valid JSON")
        return
    if isinstance(value, list):
        for item in value:
            check_plain(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys must be str, not {type(key).__name__} {key!r}")
            check_plain(item, depth + 1)
        return
    raise TypeError(f"{type(value).__name__} is not JSON")
