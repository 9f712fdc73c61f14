"""Every error Strata raises maps to one message line and one exit code, in one place
(api/cli/errors.py): the codes of each family of the error tree, and how an error leaves
the real command line (`error: <message>` on standard error, the family's exit code)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import strata.core
from strata.api.cli.errors import EXIT_CODES, exit_code
from strata.core.config import Settings
from strata.core.errors import (
    ConcurrencyError,
    DuplicateEvent,
    IntegrityError,
    Interrupted,
    InvalidInput,
    JobError,
    ModelError,
    NotFound,
    RetryableError,
    StoreFromNewerVersion,
    StoreNotInitialised,
    StrataError,
)
from strata.core.layers import load_layers
from tests.api.cli import test_cli
from tests.api.cli.test_cli import Cli, write_png

cli = test_cli.cli  # the fixture: an initialised store and its command line

# The documented codes (README): scripts rely on them, so they are spelled out here rather
# than read back from EXIT_CODES.
FAMILIES: dict[type[StrataError], int] = {
    InvalidInput: 2,
    ConcurrencyError: 3,
    DuplicateEvent: 3,
    NotFound: 4,
    IntegrityError: 5,
    StoreNotInitialised: 6,
    StoreFromNewerVersion: 6,
    ModelError: 7,
    JobError: 8,
    Interrupted: 130,
}
# Errors that never reach a face on their own: a retryable failure is recorded on its job
# by the worker. They take the generic code.
GENERIC = {StrataError, RetryableError}


def every_error_class() -> set[type[StrataError]]:
    """StrataError and all its subclasses, once every module that may define one is loaded."""
    load_layers()
    for module in pkgutil.walk_packages(strata.core.__path__, "strata.core."):
        importlib.import_module(module.name)

    def below(cls: type[StrataError]) -> Iterator[type[StrataError]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from below(sub)

    return {StrataError, *below(StrataError)}


def test_every_error_maps_to_the_code_of_its_one_family() -> None:
    classes = every_error_class()
    # The walk saw the errors defined outside core/errors.py (models, pipelines).
    assert {"ModelDrift", "NoWeightFiles", "UnknownScheduler"} <= {c.__name__ for c in classes}
    for cls in sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        families = [family for family in FAMILIES if issubclass(cls, family)]
        # The code depends on the class only: no need for each one's arguments.
        error = cls.__new__(cls)  # type: ignore[call-overload]  # mypy takes type.__new__
        if cls in GENERIC:
            assert families == [] and exit_code(error) == 1, cls
            continue
        assert len(families) == 1, f"{cls.__qualname__} belongs to {families}: one family each"
        assert exit_code(error) == FAMILIES[families[0]], cls
    # Nothing in the table that the documented families do not name.
    assert set(EXIT_CODES) == set(FAMILIES) | {StrataError}


def test_an_error_leaves_the_command_line_as_one_line_and_its_code(
    cli: Cli, tmp_path: Path, settings: Settings
) -> None:
    def fails(code: int, *args: str) -> str:
        result = cli(*args, ok=False)
        assert result.returncode == code, (args, result.stderr)
        assert result.stdout == ""
        # One line, no traceback; a message with brackets is not taken for Rich markup.
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        return result.stderr.removeprefix("error: ").strip()

    assert fails(2, "show", "[bold]x") == ("'[bold]x' does not name an asset or an event: give "
                                           "at least 4 hex digits of its hash or id")
    assert fails(4, "show", "ffff0000ffff") == "no asset or event matches 'ffff0000ffff'"
    empty = tmp_path / "empty-model"
    empty.mkdir()
    assert "empty-model" in fails(7, "model", "add", "broken", str(empty))

    cli("add", str(write_png(tmp_path, "a.png", 1)))
    (digest,) = cli.digests()
    (settings.objects_dir / digest[7:9] / digest[9:]).write_bytes(b"not the bytes it was")
    result = cli("verify", ok=False)
    assert result.returncode == 5
    # verify lists each problem, then the error that sets the code closes the report.
    problem, last = result.stderr.splitlines()
    assert f"corrupt blob {digest}" in problem
    assert last == "error: verify FAILED: 1 problem(s) in 1 events"
