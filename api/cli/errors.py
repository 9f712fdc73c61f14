"""How the command line reports every error Strata raises: one message line on standard
error and one exit code per family of the error tree (core/errors.py).

Scripts can rely on the codes; they are listed in the README. The table is shared with
the HTTP face (api/errors.py); an error class not named there takes the code of its
nearest named ancestor, so a new error never goes unreported.
"""

from __future__ import annotations

from strata.api.errors import FAMILIES, family_of
from strata.core.errors import StrataError

EXIT_CODES: dict[type[StrataError], int] = {
    cls: family.exit_code for cls, family in FAMILIES.items()}


def exit_code(error: StrataError) -> int:
    return family_of(error).exit_code
