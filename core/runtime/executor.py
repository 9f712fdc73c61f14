"""What an executor is: the contract between the runtime and the layer modules.

Kept apart from the runtime (core.runtime) so that a layer module, which defines its
events beside its executor, can be imported by the projections without pulling in the
worker machinery.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeVar

from strata.core.errors import JobError
from strata.core.ledger.event_types import JobCompleted, JobRequest

R = TypeVar("R", bound=JobRequest)

if TYPE_CHECKING:
    from strata.core.service import Strata

Progress = Callable[[str, int, int], None]  # (job_id, done, total)


class JobInterrupted(Exception):
    """The job was cancelled, or its lease was lost to another worker: stop quietly."""


@dataclass
class JobContext:
    """What an executor sees of the job it runs, and how it reports progress."""

    job_id: str
    attempt: int
    request: JobRequest
    strata: Strata
    worker: str
    on_progress: Progress | None = None
    interrupted: threading.Event = field(default_factory=threading.Event)
    started_event_id: str | None = None  # the job.started of this attempt

    def progress(self, done: int, total: int) -> None:
        """Report a step; raises JobInterrupted if the job should stop now."""
        if self.on_progress is not None:
            self.on_progress(self.job_id, done, total)
        self.check()

    def check(self) -> None:
        if self.interrupted.is_set():
            raise JobInterrupted(self.job_id)

    def request_as(self, kind: type[R]) -> R:
        """The request, as the type the executor runs; a clear error for any other."""
        if not isinstance(self.request, kind):
            raise JobError(f"a {kind.__name__} executor cannot run "
                           f"{type(self.request).__name__}")
        return self.request


class Executor(ABC):
    """Does the work of one layer. The only place where diffusion, Pillow or PyAV run."""

    layer: ClassVar[str]
    version: ClassVar[str] = "1"

    @abstractmethod
    def run(self, ctx: JobContext) -> JobCompleted:
        """Do the job; write every output blob before returning the result payload."""
