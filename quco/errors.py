"""quco's exception hierarchy.

Every error quco raises on bad input or an unavailable resource derives from
:class:`QucoError`; the command line turns one into a single line on stderr and a
non-zero exit. A missing optional dependency raises :class:`MissingDependencyError`,
an :class:`ImportError` that names the extra to install.
"""

from __future__ import annotations


class QucoError(Exception):
    """Base class of quco's own errors."""


class BadInputError(QucoError, ValueError):
    """The caller's input (text, file, row, argument) cannot be used."""


class CorpusError(BadInputError):
    """A corpus file could not be read, or held no usable document."""


class IndexNotFoundError(QucoError, FileNotFoundError):
    """No quco index at the given path."""


class CorruptIndexError(QucoError):
    """An index exists but its manifest or files are damaged or incomplete."""


class ShardSetError(QucoError):
    """Indexes or servers given as one corpus in shards do not form one (mismatched, missing or repeated parts)."""


class TokenizerMismatchError(QucoError):
    """A query tokenizer differs from the one the index was built with."""


class BackendUnavailableError(QucoError, ConnectionError):
    """A corpus server or other remote backend could not be reached."""


class EngineError(QucoError):
    """The infini-gram engine or a remote API answered with an error."""


class ModelNotFoundError(QucoError):
    """A default model or pipeline package is not installed."""


class MissingDependencyError(QucoError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""
