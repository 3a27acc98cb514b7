"""Client errors with a status, a stable code and a message naming the problem."""

from __future__ import annotations

from detector.results import ImageError


class ApiError(Exception):
    """Rendered as ``{"detail": message, "code": code}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class Rejection(Exception):
    """Why one uploaded image cannot be scored; reported per image, never fatal to the batch."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_error(self) -> ImageError:
        return ImageError(code=self.code, status=self.status, message=self.message)


def busy(retry_after: int, what: str) -> ApiError:
    return ApiError(503, "busy", f"{what}; retry in {retry_after} s", {"Retry-After": str(retry_after)})
