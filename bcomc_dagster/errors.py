"""Errors that name what was wrong, so that a user can fix the input without reading a traceback."""

from __future__ import annotations

from pydantic import ValidationError


class BcomcError(Exception):
    """Base class for the project's errors."""


class InputError(BcomcError, ValueError):
    """Bad input: a config field, a suite file, a dataset row. The message names the field or file."""


class PredecessorMissing(BcomcError):
    """An iteration asked for the artifacts of an iteration that was never materialised."""


class ServingError(BcomcError):
    """A model server did not start, did not become ready, or does not serve the expected weights."""


class StageFailed(BcomcError):
    """A run of the loop failed; ``cause`` is the class name of the error that failed its step."""

    def __init__(self, message: str, cause: str | None = None):
        super().__init__(message)
        self.cause = cause


def field_errors(e: ValidationError, whole: str = "value") -> list[str]:
    """Each error of ``e`` as ``field.path: message`` (``whole`` for an error about the whole object)."""
    return [
        f"{'.'.join(map(str, err['loc'])) or whole}: {err['msg'].removeprefix('Value error, ')}"
        for err in e.errors()
    ]
