"""Streaming multipart parsing with the service's limits.

The body is parsed as it arrives (``python-multipart``), so the request byte limit is
enforced on the stream, not only on ``Content-Length``; the file count is checked as each
part begins; a file over the per-file limit is not kept (its bytes are counted and dropped)
and becomes a per-file rejection. Client file names are kept only as display text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from serving.errors import ApiError, Rejection

FIELDS = ("asset_type", "site", "flight")
MAX_FIELD_BYTES = 1000
MAX_FILENAME = 200


@dataclass(frozen=True)
class UploadLimits:
    max_files: int
    max_file_bytes: int
    max_request_bytes: int


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


_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def display_name(raw: str, index: int) -> str:
    """A client file name reduced to display text: last path component, no control
    characters, at most 200 characters. Never used to build a path."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("", name).strip()
    if name in ("", ".", ".."):
        name = f"file{index}"
    return name[:MAX_FILENAME]


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
        if b"filename" in options:
            index = len(self.upload.files)
            if index >= self.limits.max_files:
                raise ApiError(
                    413, "too_many_files", f"too many files: more than {self.limits.max_files} in one request"
                )
            raw = options[b"filename"].decode("utf-8", "replace")
            self._file = UploadedFile(index=index, filename=display_name(raw, index))
            self.upload.files.append(self._file)
        else:
            fname = name.decode("utf-8", "replace")
            if fname not in FIELDS:
                raise ApiError(
                    422, "unknown_field", f"unknown form field {fname[:40]!r}; expected files and {', '.join(FIELDS)}"
                )
            if fname in self.upload.fields:
                raise ApiError(422, "duplicate_field", f"form field {fname!r} given twice")
            self._field = fname

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
) -> Upload:
    """Parse a multipart upload; ``on_file`` is awaited for each file as soon as it is complete
    (and may drop ``data`` after storing it). Raises ApiError for request-level problems."""
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
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limits.max_request_bytes:
                raise ApiError(
                    413, "request_too_large", f"request body exceeds the limit of {limits.max_request_bytes} bytes"
                )
            parser.write(chunk)
            while parts.finished:
                f = parts.finished.pop(0)
                if on_file is not None:
                    await on_file(f)
        parser.finalize()
    except FormParserError:
        raise ApiError(400, "malformed_multipart", "the multipart body is malformed") from None
    for f in parts.finished:
        if on_file is not None:
            await on_file(f)
    if not parts.upload.files:
        raise ApiError(422, "no_files", "no images in the upload; send them as multipart form field 'files'")
    if not all(f.complete for f in parts.upload.files):
        raise ApiError(400, "malformed_multipart", "the multipart body ends inside a file")
    return parts.upload
