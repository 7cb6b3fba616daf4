"""Errors that name what was wrong, so that a user can fix the input without reading a traceback."""


class BcomcError(Exception):
    """Base class for the project's errors."""


class InputError(BcomcError, ValueError):
    """Bad input: a config field, a suite file, a dataset row. The message names the field or file."""


class PredecessorMissing(BcomcError):
    """An iteration asked for the artifacts of an iteration that was never materialised."""


class ServingError(BcomcError):
    """A model server did not start, did not become ready, or does not serve the expected weights."""
