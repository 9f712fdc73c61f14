"""How the command line reports every error Strata raises: one message line on standard
error and one exit code per family of the error tree (core/errors.py).

Scripts can rely on the codes; they are listed in the README. An error class not named
here takes the code of its nearest named ancestor, so a new error never goes unreported.
"""

from __future__ import annotations

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

EXIT_CODES: dict[type[StrataError], int] = {
    StrataError: 1,
    InvalidInput: 2,  # the request or file is malformed (ambiguous names included)
    ConcurrencyError: 3,  # someone else wrote first
    DuplicateEvent: 3,
    NotFound: 4,
    IntegrityError: 5,  # verify failed, a corrupt blob, a broken chain, a shortened log
    StoreNotInitialised: 6,
    StoreFromNewerVersion: 6,
    ModelError: 7,
    JobError: 8,  # a job cannot be run as asked, or ended without completing
    Interrupted: 130,  # as shells report Ctrl-C
}


def exit_code(error: StrataError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]  # type: ignore[index]
    return EXIT_CODES[StrataError]
