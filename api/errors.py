"""How every face reports the one error tree (core/errors.py): one row per family, read by
the command line (exit codes, api/cli/errors.py) and by HTTP (problem+json statuses,
api/http/problems.py), so the two faces cannot drift apart.

An error class not named here takes the row of its nearest named ancestor, so a new error
never goes unreported.
"""

from __future__ import annotations

from dataclasses import dataclass

from strata.core.errors import (
    ConcurrencyError,
    DuplicateEvent,
    IntegrityError,
    Interrupted,
    InvalidInput,
    JobError,
    ModelError,
    NotFound,
    StoreFromNewerVersion,
    StoreNotInitialised,
    StrataError,
)


@dataclass(frozen=True)
class Family:
    exit_code: int
    status: int  # HTTP
    title: str


FAMILIES: dict[type[StrataError], Family] = {
    StrataError: Family(1, 500, "Strata error"),
    # the request or file is malformed (ambiguous names included)
    InvalidInput: Family(2, 422, "Invalid input"),
    ConcurrencyError: Family(3, 409, "Version conflict"),  # someone else wrote first
    DuplicateEvent: Family(3, 409, "Duplicate event"),
    NotFound: Family(4, 404, "Not found"),
    # verify failed, a corrupt blob, a broken chain, a shortened log
    IntegrityError: Family(5, 500, "Integrity check failed"),
    StoreNotInitialised: Family(6, 503, "Store not initialised"),
    StoreFromNewerVersion: Family(6, 503, "Store from a newer version"),
    ModelError: Family(7, 422, "Model error"),
    # a job cannot be run as asked, or ended without completing
    JobError: Family(8, 409, "Job error"),
    Interrupted: Family(130, 503, "Interrupted"),  # 130: as shells report Ctrl-C
}


def family_of(error: StrataError) -> Family:
    for cls in type(error).__mro__:
        if cls in FAMILIES:
            return FAMILIES[cls]  # type: ignore[index]
    return FAMILIES[StrataError]
