"""The local ADU service's request errors, answered in Device Update's error shape.

Device Update answers ``{"error": {"code", "message", ...}}`` (the SDK's
``HttpResponseError`` reads ``error.code`` and ``error.message``).
"""

from __future__ import annotations


class AduRequestError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}
