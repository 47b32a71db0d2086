"""The exporter's one error type (its own module so that onnx/int8/parity/build can all raise it)."""

from __future__ import annotations

from typing import Any


class ExportError(RuntimeError):
    """The export could not produce a trustworthy bundle (a parity gate failed, inputs missing, ...)."""

    def __init__(self, message: str, report: dict[str, Any] | None = None):
        self.report = report or {}
        super().__init__(message)
