"""The exception type for mistakes a user makes (bad data, bad arguments, bad files).

Readers, the sampler, configuration checks and checkpoint loading raise :class:`UserError`
(or a subclass) for input the user can fix; the ``mag-mmt`` command prints these as
``mag-mmt: error: ...`` with exit status 2 and no traceback. Anything else is a bug and keeps
its traceback. ``UserError`` is a ``ValueError``, so ``except ValueError`` still catches it.

>>> from mag_mmt.errors import UserError
>>> issubclass(UserError, ValueError)
True

A missing file is a :class:`MissingFileError` (also a ``FileNotFoundError``).
"""

from __future__ import annotations


class UserError(ValueError):
    """Input the user can fix: the message names the file, line, identity or argument."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or a list file names) does not exist.

    Both a :class:`UserError` and a ``FileNotFoundError``, so either ``except`` catches it.

    >>> issubclass(MissingFileError, FileNotFoundError) and issubclass(MissingFileError, UserError)
    True
    """
