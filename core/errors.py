"""One exception hierarchy for everything Strata refuses.

The faces (command line, HTTP) map these classes to exit codes and problem+json in one
place each, so every error carries the facts a user needs to fix the problem in its
message: which stream, which version was expected, which file was refused and why.
"""

from __future__ import annotations


class StrataError(Exception):
    """Root of every error Strata raises on purpose."""

    exit_code = 1


class InvalidInput(StrataError):
    """The request or file is malformed; nothing was recorded."""

    exit_code = 2


class ConcurrencyError(StrataError):
    """A stream was not at the version the writer expected; nothing was recorded."""

    exit_code = 3

    def __init__(self, stream: str, expected: int | None, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        wanted = "to not exist yet" if expected == 0 else f"at version {expected}"
        super().__init__(
            f"stream {stream!r} was expected {wanted} but is at version {actual}; "
            "someone else wrote to it first; reload and try again"
        )


class DuplicateEvent(StrataError):
    """An event id that is already in the log was appended again."""

    exit_code = 3


class UnknownEventType(InvalidInput):
    """An event type that no registered model describes was offered for appending."""


class NotFound(StrataError):
    exit_code = 4


class AssetNotFound(NotFound):
    pass


class EventNotFound(NotFound):
    pass


class JobNotFound(NotFound):
    pass


class BranchNotFound(NotFound):
    pass


class AmbiguousReference(InvalidInput):
    """A hash prefix matched more than one asset or event."""


class BlobCorrupt(StrataError):
    """Stored bytes no longer hash to their address."""

    exit_code = 5


class StoreNotInitialised(StrataError):
    """The database has no Strata schema, or an older one than this version needs."""

    exit_code = 6


class ModelError(StrataError):
    """A model, device or pipeline setting that Strata cannot use."""

    exit_code = 7


class JobError(StrataError):
    """A job cannot be requested, cancelled or run as asked."""

    exit_code = 8


class RetryableError(StrataError):
    """A failure worth another attempt (a flaky disk, a busy device): the job is retried
    with backoff until its attempts run out."""


class ChainBroken(StrataError):
    """The hash chain does not hold: an event was rewritten, removed or reordered."""

    exit_code = 5


class LogShortened(StrataError):
    """The log is shorter than what was already seen of it: its newest events were deleted."""

    exit_code = 5


class StoreFromNewerVersion(StrataError):
    """The store holds events or a schema that this version of Strata cannot read."""

    exit_code = 6
