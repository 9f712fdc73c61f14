"""One exception hierarchy for everything Strata refuses.

The faces (command line, HTTP) map these classes to exit codes and problem+json in one
place each (api/cli/errors.py, …), so every error carries the facts a user needs to fix
the problem in its message: which stream, which version was expected, which file was
refused and why.
"""

from __future__ import annotations


class StrataError(Exception):
    """Root of every error Strata raises on purpose."""


class InvalidInput(StrataError):
    """The request or file is malformed; nothing was recorded."""


class ConcurrencyError(StrataError):
    """A stream was not at the version the writer expected; nothing was recorded."""


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


class UnknownEventType(InvalidInput):
    """An event type that no registered model describes was offered for appending."""


class NotFound(StrataError):
    """What a name or reference points at does not exist (at this point of the log)."""


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


class IntegrityError(StrataError):
    """The record does not hold: stored bytes or events were altered or removed."""


class BlobCorrupt(IntegrityError):
    """Stored bytes no longer hash to their address."""


class StoreNotInitialised(StrataError):
    """The database has no Strata schema, or an older one than this version needs."""


class ModelError(StrataError):
    """A model, device or pipeline setting that Strata cannot use."""


class JobError(StrataError):
    """A job cannot be requested, cancelled or run as asked."""


class RetryableError(StrataError):
    """A failure worth another attempt (a flaky disk, a busy device): the job is retried
    with backoff until its attempts run out."""


class ChainBroken(IntegrityError):
    """The hash chain does not hold: an event was rewritten, removed or reordered."""


class LogShortened(IntegrityError):
    """The log is shorter than what was already seen of it: its newest events were deleted."""


class StoreFromNewerVersion(StrataError):
    """The store holds events or a schema that this version of Strata cannot read."""


class VerificationFailed(IntegrityError):
    """`verify` found breaks in the chain, or missing or corrupt blobs."""


class JobFailure(JobError):
    """A job that was waited for ended without completing (failed or cancelled)."""


class Interrupted(StrataError):
    """The user stopped a command (Ctrl-C) while it waited; the message says what became
    of the work."""

