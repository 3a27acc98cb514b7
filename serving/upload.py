"""Streaming multipart parsing with the service's limits.

The body is parsed as it arrives (``python-multipart``), so the request byte limit is
enforced on the stream, not only on ``Content-Length``; the file count is checked as each
part begins; a file over the per-file limit is not kept (its bytes are counted and dropped)
and becomes a per-file rejection. Client file names are kept only as display text.

The body must also arrive in time (:class:`UploadPace`): within the request's deadline and,
after a grace period, at an average rate of at least ``min_bytes_per_second``; a slower
upload is cut off with 408. :class:`serving.services.Services` may also cut off an upload
below that rate (grace or not) when another client is waiting for its upload slot.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
import urllib.parse
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

import anyio
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from serving.errors import ApiError, Rejection

#: the one file field (repeated), then the text fields
FILE_FIELD = "files"
#: the flight's conditions, accepted as form fields of POST /v1/inspections (see detector.config.Conditions)
CONDITION_FIELDS = ("irradiance_w_m2", "emissivity", "reflected_temp_c", "distance_m", "relative_humidity")
TEXT_FIELDS = ("asset_type", "site", "flight", *CONDITION_FIELDS)
MAX_FIELD_BYTES = 1000
#: characters of a file name shown (the rest is cut)
MAX_FILENAME = 200
#: characters of a file name accepted (as sent, with any path); a longer one is refused (422)
MAX_FILENAME_CHARS = 1024
#: bytes of one header line of a multipart part (a file name of MAX_FILENAME_CHARS fits, even percent-encoded)
MAX_PART_HEADER_BYTES = 16 * 1024
#: the pace rule's floor: an upload younger than this is never judged by its rate
MIN_PACE_AGE_SECONDS = 1.0


@dataclass(frozen=True)
class UploadLimits:
    max_files: int
    max_file_bytes: int
    max_request_bytes: int
    #: seconds the whole body may take (408 after that); None: no deadline
    timeout_seconds: float | None = None


@dataclass
class UploadedFile:
    """One file part. ``data`` is None when the file was rejected while reading (``error``)."""

    index: int
    filename: str
    size: int = 0
    data: bytes | None = None
    error: Rejection | None = None
    complete: bool = False


@dataclass
class Upload:
    files: list[UploadedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class UploadPace:
    """How far one upload's body has come, for the 408 rules and for the upload slots: after
    ``grace_seconds`` the body must have arrived at an average of ``min_bytes_per_second``
    (0: no minimum). The upload slot (``Services.upload_slot``) makes one from the settings."""

    min_bytes_per_second: float = 0
    grace_seconds: float = 0
    started: float = field(default_factory=time.monotonic)
    received: int = 0
    paused: float = 0.0  # seconds spent on the server's own work between chunks (not the client's fault)
    cut_off: str | None = None  # why another request cut this one off
    _scope: anyio.CancelScope | None = None

    def age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started - self.paused

    def below_minimum(self, now: float | None = None) -> bool:
        """Slower than the minimum rate on average, grace period or not (judged once the upload
        is MIN_PACE_AGE_SECONDS old): the upload a waiting client may cut off."""
        age, rate = self.age(now), self.min_bytes_per_second
        return rate > 0 and age >= MIN_PACE_AGE_SECONDS and self.received < rate * age

    def deadline(self, limits: UploadLimits) -> float:
        """When the body, as far as it has come, stops being in time (``time.monotonic`` clock)."""
        origin = self.started + self.paused
        ends = [math.inf]
        if limits.timeout_seconds:
            ends.append(origin + limits.timeout_seconds)
        if self.min_bytes_per_second > 0:
            ends.append(origin + max(self.grace_seconds, self.received / self.min_bytes_per_second))
        return min(ends)

    def cut(self, reason: str) -> None:
        """Stop this upload (from another request, on the same event loop): it answers 408."""
        self.cut_off = reason
        if self._scope is not None:
            self._scope.cancel()

    def late(self, limits: UploadLimits) -> ApiError:
        close = {"Connection": "close"}
        if self.cut_off is not None:
            return ApiError(408, "upload_too_slow", self.cut_off, close)
        if limits.timeout_seconds and self.age() >= limits.timeout_seconds:
            return ApiError(
                408, "upload_timeout", f"the upload did not arrive within {limits.timeout_seconds:g} s", close
            )
        return ApiError(
            408,
            "upload_too_slow",
            f"the upload arrived at {self.received / max(self.age(), 1e-9):.0f} bytes/s, below the minimum of "
            f"{self.min_bytes_per_second:g} bytes/s (after {self.grace_seconds:g} s)",
            close,
        )


#: the pace of the upload slot the current request holds (set by ``Services.upload_slot``)
current_pace: ContextVar[UploadPace | None] = ContextVar("current_pace", default=None)

#: removed from file names: control characters (C0, DEL, C1), the bidirectional controls that
#: reorder what a report shows (LRM/RLM/ALM, embeddings and overrides U+202A-U+202E, isolates
#: U+2066-U+2069), the line and paragraph separators and the byte-order mark
UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def display_name(raw: str, index: int) -> str:
    """A client file name reduced to display text: last path component, no control or
    bidirectional-control characters, at most 200 characters. Never used to build a path."""
    name = UNSAFE_TEXT.sub("", unicodedata.normalize("NFC", raw)).replace("\\", "/").rsplit("/", 1)[-1]
    name = name.strip()
    if name in ("", ".", ".."):
        name = f"file{index}"
    return name[:MAX_FILENAME]


_EXT_FILENAME = re.compile(rb"(?:^|;)\s*filename\*\s*=\s*([^;]*)", re.I)


def part_filename(disposition: bytes, options: dict[bytes, bytes]) -> str | None:
    """The file name of a part (RFC 6266: ``filename*=UTF-8''...`` before ``filename=``);
    None for a text part."""
    m = _EXT_FILENAME.search(disposition)
    if m:
        charset, _, rest = m.group(1).strip().strip(b'"').decode("latin-1").partition("'")
        _, _, value = rest.partition("'")
        try:
            return urllib.parse.unquote(value, encoding=charset or "utf-8", errors="replace")
        except LookupError:  # unknown charset
            return urllib.parse.unquote(value, errors="replace")
    if b"filename" in options:
        return options[b"filename"].decode("utf-8", "replace")
    return None


class _Parts:
    """python-multipart callbacks collecting fields and files under the limits."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.upload = Upload()
        self.finished: list[UploadedFile] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._hname = b""
        self._hvalue = b""
        self._file: UploadedFile | None = None
        self._buf = bytearray()
        self._field: str | None = None

    # header handling
    def on_part_begin(self) -> None:
        self._headers, self._buf, self._file, self._field = [], bytearray(), None, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def on_header_end(self) -> None:
        self._headers.append((self._hname.lower(), self._hvalue))
        self._hname, self._hvalue = b"", b""

    def on_headers_finished(self) -> None:
        disposition = next((v for k, v in self._headers if k == b"content-disposition"), b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name")
        if name is None:
            raise ApiError(400, "malformed_multipart", "a multipart part has no name in its Content-Disposition header")
        fname = name.decode("utf-8", "replace")
        filename = part_filename(disposition, options)
        if fname == FILE_FIELD:
            if filename is None:
                raise ApiError(
                    422,
                    "not_a_file",
                    "form field 'files' must be a file part (Content-Disposition with a filename), not text",
                )
            index = len(self.upload.files)
            if index >= self.limits.max_files:
                raise ApiError(
                    413, "too_many_files", f"too many files: more than {self.limits.max_files} in one request"
                )
            self._file = UploadedFile(index=index, filename=display_name(filename, index))
            if len(filename) > MAX_FILENAME_CHARS:
                self._file.error = Rejection(
                    422, "filename_too_long", f"file name longer than {MAX_FILENAME_CHARS} characters"
                )
            self.upload.files.append(self._file)
        elif fname in TEXT_FIELDS:
            if filename is not None:
                raise ApiError(
                    422,
                    "unexpected_file",
                    f"form field {fname!r} must be text, not a file; send the images as form field 'files'",
                )
            if fname in self.upload.fields:
                raise ApiError(422, "duplicate_field", f"form field {fname!r} given twice")
            self._field = fname
        else:
            what = "; send the images as form field 'files'" if filename is not None else ""
            raise ApiError(
                422,
                "unknown_field",
                f"unknown form field {fname[:40]!r}{what}; expected files and {', '.join(TEXT_FIELDS)}",
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._file is not None:
            f = self._file
            f.size += n
            if f.error is None and f.size > self.limits.max_file_bytes:
                f.error = Rejection(
                    413, "file_too_large", f"file is larger than the limit of {self.limits.max_file_bytes} bytes"
                )
                self._buf = bytearray()
            if f.error is None:
                self._buf += data[start:end]
        else:
            if len(self._buf) + n > MAX_FIELD_BYTES:
                raise ApiError(
                    422, "field_too_long", f"form field {self._field!r} is longer than {MAX_FIELD_BYTES} bytes"
                )
            self._buf += data[start:end]

    def on_part_end(self) -> None:
        if self._file is not None:
            f = self._file
            f.complete = True
            if f.error is None:
                if f.size == 0:
                    f.error = Rejection(422, "empty_file", "file is empty")
                else:
                    f.data = bytes(self._buf)
            self.finished.append(f)
        elif self._field is not None:
            try:
                self.upload.fields[self._field] = bytes(self._buf).decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(422, "bad_field", f"form field {self._field!r} is not UTF-8 text") from None
        self._buf = bytearray()


async def read_upload(
    request: Request,
    limits: UploadLimits,
    on_file: Callable[[UploadedFile], Awaitable[None]] | None = None,
    pace: UploadPace | None = None,
) -> Upload:
    """Parse a multipart upload; ``on_file`` is awaited for each file as soon as it is complete
    (and may drop ``data`` after storing it). Raises ApiError for request-level problems, 408
    when the body does not arrive in time (``pace`` tracks it: by default the pace of the
    upload slot this request holds)."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        raise ApiError(415, "not_multipart", "send the images as multipart/form-data (form field 'files')")
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "malformed_multipart", "multipart/form-data without a boundary")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_request_bytes:
        raise ApiError(
            413, "request_too_large", f"request body of {length} bytes exceeds the limit of {limits.max_request_bytes}"
        )
    pace = pace or current_pace.get() or UploadPace()
    parts = _Parts(limits)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": parts.on_part_begin,
            "on_part_data": parts.on_part_data,
            "on_part_end": parts.on_part_end,
            "on_header_field": parts.on_header_field,
            "on_header_value": parts.on_header_value,
            "on_header_end": parts.on_header_end,
            "on_headers_finished": parts.on_headers_finished,
        },
        max_header_size=MAX_PART_HEADER_BYTES,
    )

    async def hand_over() -> None:
        # the server's own work (storing a job's file): not counted against the client's pace
        while parts.finished:
            f = parts.finished.pop(0)
            if on_file is not None:
                t0 = time.monotonic()
                await on_file(f)
                pace.paused += time.monotonic() - t0
        if pace.cut_off is not None:
            raise pace.late(limits)

    more = True
    try:
        while more:
            message = None
            deadline = anyio.current_time() + (pace.deadline(limits) - time.monotonic())  # in the loop's clock
            with anyio.CancelScope(deadline=deadline) as scope:
                pace._scope = scope
                message = await request.receive()
            pace._scope = None
            if message is None or pace.cut_off is not None:
                raise pace.late(limits)
            if message["type"] == "http.disconnect":
                raise ApiError(400, "client_disconnected", "the client closed the connection during the upload")
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            pace.received += len(chunk)
            if pace.received > limits.max_request_bytes:
                raise ApiError(
                    413, "request_too_large", f"request body exceeds the limit of {limits.max_request_bytes} bytes"
                )
            if chunk:
                parser.write(chunk)
            await hand_over()
        parser.finalize()
    except FormParserError as e:
        if "header size" in str(e):
            raise ApiError(
                400,
                "malformed_multipart",
                f"a multipart part header is longer than {MAX_PART_HEADER_BYTES} bytes "
                f"(a file name may have at most {MAX_FILENAME_CHARS} characters)",
            ) from None
        if "header count" in str(e):
            raise ApiError(400, "malformed_multipart", "a multipart part has too many headers") from None
        raise ApiError(400, "malformed_multipart", "the multipart body is malformed") from None
    finally:
        pace._scope = None
    await hand_over()
    if not parts.upload.files:
        raise ApiError(422, "no_files", "no images in the upload; send them as multipart form field 'files'")
    if not all(f.complete for f in parts.upload.files):
        raise ApiError(400, "malformed_multipart", "the multipart body ends inside a file")
    return parts.upload
