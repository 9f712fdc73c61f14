"""Branches: named heads over the iterations of a piece of work.

Creating, advancing and rolling back are events on the branch's own stream, appended
with the stream's expected version, so two concurrent head moves cannot both win.
Nothing is ever removed: every earlier head stays listed in the branch's history.
The current branch (`strata checkout`) is a local preference, like git's HEAD file.
"""

from __future__ import annotations

import re

from strata.core.errors import BranchNotFound, ConcurrencyError, InvalidInput
from strata.core.ledger.event_types import BranchAdvanced, BranchCreated, BranchRolledBack
from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.ledger.log import retry_on_conflict
from strata.core.projections import views
from strata.core.service import Strata

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
STEPS_BACK = re.compile(r"^~(\d+)$")


def stream(name: str) -> str:
    return f"branch:{name}"


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise InvalidInput(
            f"invalid branch name {name!r}: use letters, digits, '.', '_', '-' and '/'"
        )


def create(strata: Strata, name: str, head_ref: str | None = None) -> RecordedEvent:
    _check_name(name)
    head = strata.resolve_asset(head_ref) if head_ref else None
    try:
        return strata.record(stream(name), [BranchCreated(name=name, head=head)],
                             expected_version=0)[0]
    except ConcurrencyError:
        raise InvalidInput(f"branch {name!r} already exists") from None


def moves(strata: Strata, name: str) -> list[dict]:
    """Every head the branch ever had, oldest first (rollbacks included)."""
    _require(strata, name)
    with strata.view() as conn:
        return views.branch_moves(conn, name)


def _require(strata: Strata, name: str) -> dict:
    with strata.view() as conn:
        row = views.branch(conn, name)
    if row is None:
        raise BranchNotFound(f"no branch named {name!r}; create it with `strata branch create`")
    return row


def advance_part(
    strata: Strata, name: str, head: str, job_id: str | None = None
) -> tuple[str, list[Payload], int]:
    """The `branch.advanced` event moving the head to `head`, with the version the branch
    stream must still be at: a part for `Strata.record_together`."""
    row = _require(strata, name)
    payload = BranchAdvanced(name=name, head=head, previous_head=row["head"], job_id=job_id)
    return stream(name), [payload], row["version"]


def advance(strata: Strata, name: str, head: str) -> RecordedEvent:
    """Move the head forward to `head`, from wherever another writer left it."""
    return retry_on_conflict(
        lambda: strata.record_together([advance_part(strata, name, head)])[0])


def rollback(strata: Strata, name: str | None, to: str, reason: str | None = None,
             expected_version: int | None = None) -> RecordedEvent:
    """Point the branch (default: the checked-out one) back at an earlier head: an asset it
    had, or `~N` heads back."""
    name = resolve(strata, name)
    if name is None:
        raise InvalidInput("no branch given and none is checked out (`strata checkout NAME`)")
    row = _require(strata, name)
    with strata.view() as conn:
        moves = views.branch_moves(conn, name)
    heads: list[str] = []
    for move in moves:
        if move["head"] and (not heads or heads[-1] != move["head"]):
            heads.append(move["head"])
    steps = STEPS_BACK.match(to)
    if steps:
        back = int(steps.group(1))
        if back < 1 or back >= len(heads):
            raise InvalidInput(
                f"branch {name!r} has had {len(heads)} head(s); cannot go back {back}"
            )
        target = heads[-1 - back]
    else:
        target = strata.resolve_asset(to)
        if target not in heads:
            raise InvalidInput(
                f"{target[:19]}… was never a head of branch {name!r}; "
                "see `strata branch log` for the heads it had"
            )
    if target == row["head"]:
        raise InvalidInput(f"branch {name!r} is already at {target[:19]}…")
    payload = BranchRolledBack(name=name, head=target, previous_head=row["head"], reason=reason)
    version = row["version"] if expected_version is None else expected_version
    return strata.record(stream(name), [payload], expected_version=version)[0]


def resolve(strata: Strata, given: str | None) -> str | None:
    """The branch a request goes on: the one given, else the checked-out one (if any)."""
    return given if given is not None else current(strata)


def current(strata: Strata) -> str | None:
    head_file = strata.store.settings.resolved_home / "HEAD"
    if not head_file.is_file():
        return None
    return head_file.read_text().strip() or None


def checkout(strata: Strata, name: str) -> None:
    _require(strata, name)
    head_file = strata.store.settings.resolved_home / "HEAD"
    head_file.parent.mkdir(parents=True, exist_ok=True)
    head_file.write_text(name + "\n")
