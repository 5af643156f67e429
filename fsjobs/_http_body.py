"""
Request bodies of ``POST /jobs/{task}``: JSON, or multipart with uploads streamed to disk.

A JSON body is read up to the app's cap (413 past it) and parsed strictly (no
NaN, no duplicate keys; 422 otherwise). A multipart body is parsed as it
arrives: each field without a file name holds one option as JSON; each file
is written, chunk by chunk, into an upload stage in the root's ``tmp/``
(`Store.stage_uploads`), through the descriptor the store hands out, with
aiofiles. No file is ever held whole in memory; the non-file fields together
are capped like a JSON body, each file by the app's upload cap (none by
default). The push then renames the stage into the job.
"""

from __future__ import annotations

import errno
import typing

import aiofiles
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ._http_base import Problem, Settings
from ._json import JSON, loads
from ._text import printable
from .store import UploadStage

#: the options a submission may carry, besides the task name in the path
OPTIONS = frozenset(
    {"kwargs", "priority", "scheduled_at", "unique_key", "queue", "timeout", "max_attempts"}
)


def _too_large(what: str, cap: int) -> Problem:
    return Problem(413, "too_large", f"{what} is over the limit of {cap} bytes")


def _check_length(request: Request, cap: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise _too_large("the request body", cap)


async def read_json(request: Request, settings: Settings) -> dict[str, JSON]:
    """The options of a JSON submission (an object; {} for an empty body)."""
    _check_length(request, settings.max_body)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > settings.max_body:
            raise _too_large("the request body", settings.max_body)
    if not body.strip():
        return {}
    try:
        value = loads(bytes(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(422, "invalid_json", f"the body is not valid JSON: {printable(exc)}") from exc
    if not isinstance(value, dict):
        raise Problem(422, "invalid", "the body must be a JSON object")
    return value


class Multipart:
    """
    One multipart body being read: its options, and the upload stage its files
    went to (None if it had no file). `discard` the stage if the push does not
    take it, and after the push in any case (see `Store.discard_uploads`).
    """

    def __init__(self, request: Request, settings: Settings) -> None:
        self.request = request
        self.settings = settings
        self.store = settings.queue.store
        self.options: dict[str, JSON] = {}
        self.stage: UploadStage | None = None
        self._events: list[tuple[str, typing.Any]] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._field_bytes = 0
        self._ended = False
        self._part = _Part(self)

    # -- the parser's callbacks: they only note what happened ------------------------------

    def _on_part_begin(self) -> None:
        self._disposition = b""

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        name = params.get(b"name")
        if name is None:
            raise Problem(422, "invalid", "a multipart part has no name")
        self._events.append(("start", (name.decode("utf-8", "replace"), b"filename" in params)))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(("data", data[start:end]))

    def _on_part_end(self) -> None:
        self._events.append(("end", None))

    def _on_end(self) -> None:
        self._ended = True

    # -- reading ---------------------------------------------------------------------------

    async def read(self) -> None:
        """Read the whole body; raises `Problem` (and leaves `stage` for the caller to discard)."""
        _, params = parse_options_header(self.request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if not boundary:
            raise Problem(422, "invalid", "a multipart body needs a boundary")
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_end": self._on_end,
            },
        )
        try:
            async for chunk in self.request.stream():
                parser.write(chunk)
                await self._apply()
            parser.finalize()
            await self._apply()
        except FormParserError as exc:
            raise Problem(422, "invalid", f"bad multipart body: {printable(exc)}") from exc
        finally:
            await self._part.close()
        if not self._ended:
            raise Problem(422, "invalid", "the multipart body ended before its last boundary")

    async def _apply(self) -> None:
        """Carry out what the parser saw: open, write and close files; collect fields."""
        events, self._events = self._events, []
        for kind, value in events:
            if kind == "start":
                await self._part.close()
                self._part = _Part(self)
                await self._part.start(*value)
            elif kind == "data":
                await self._part.write(value)
            else:
                await self._part.end()

    def add_field_bytes(self, n: int) -> None:
        self._field_bytes += n
        if self._field_bytes > self.settings.max_body:
            raise _too_large("the non-file fields", self.settings.max_body)


class _Part:
    """One part of a multipart body: an option field (kept) or a file (written to the stage)."""

    def __init__(self, body: Multipart) -> None:
        self.body = body
        self.name = ""
        self.data: bytearray | None = None
        self.file: typing.Any = None  # an aiofiles file, open while the part's data arrives
        self.size = 0

    async def start(self, name: str, is_file: bool) -> None:
        self.name = name
        body = self.body
        if not is_file:
            if name not in OPTIONS:
                raise Problem(
                    422, "invalid", f"unknown field {printable(name)!r}: expected {sorted(OPTIONS)}"
                )
            if name in body.options:
                raise Problem(422, "invalid", f"field {name!r} is given twice")
            self.data = bytearray()
            return
        store, queue = body.store, body.settings.queue
        if body.stage is None:
            body.stage = await queue.io(store.stage_uploads)
        fd = await queue.io(store.create_upload, body.stage, name)
        self.file = await aiofiles.open(fd, "wb")

    async def write(self, chunk: bytes) -> None:
        if self.data is not None:
            self.body.add_field_bytes(len(chunk))
            self.data += chunk
            return
        if self.file is None:
            return  # data before any part's headers: the parser allows a preamble
        self.size += len(chunk)
        cap = self.body.settings.max_upload
        if cap is not None and self.size > cap:
            raise _too_large(f"upload {self.name!r}", cap)
        try:
            await self.file.write(chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise Problem(507, "store_full", f"no space left for upload {self.name!r}") from exc
            raise

    async def end(self) -> None:
        if self.data is not None:
            try:
                self.body.options[self.name] = loads(bytes(self.data))
            except (ValueError, UnicodeDecodeError) as exc:
                raise Problem(
                    422, "invalid_json", f"field {self.name!r} is not JSON: {printable(exc)}"
                ) from exc
            self.data = None
        await self.close()

    async def close(self) -> None:
        if self.file is not None:
            file, self.file = self.file, None
            await file.close()
