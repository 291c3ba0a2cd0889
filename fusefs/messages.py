"""Errors as users see them: one line, ``fusefs: error: ...``, and whether a failure is one a user can
fix (else it is a bug, shown with its type)."""

from __future__ import annotations

from blocks.errors import BlockError
from fusefs.blockdirs import SettingsUnusable
from metadata.store import StoreError


class MountError(Exception):
    """A mount that cannot go ahead, with a message fit for one line of output."""


def is_expected(error: BaseException) -> bool:
    """Failures a user can meet and fix (their message says how); anything else is a bug."""
    return isinstance(_cause(error), MountError | SettingsUnusable | StoreError | BlockError | OSError)


def one_line(error: BaseException) -> str:
    """A message for ``fusefs: error: ...``.  Errors of ours carry their own message; anything else is a
    bug or an environment problem, so its type is named as well."""
    error = _cause(error)
    if isinstance(error, MountError | SettingsUnusable | StoreError | BlockError):
        text = str(error)
    elif isinstance(error, OSError) and error.strerror:
        text = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return " ".join(text.split()) or type(error).__name__


def _cause(error: BaseException) -> BaseException:
    """The first error inside trio's exception groups (a failure at mount, in recovery, arrives wrapped
    in one), so that it is named rather than "Exceptions from Trio nursery"."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error
