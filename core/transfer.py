"""`strata migrate-store`: copy a store (usually the local SQLite one) to another database
and blob store (usually PostgreSQL and a bucket), verified, resumable.

Blobs go first and events after (rule 1: an event reaches the target only once the blobs
it names are there). Events are copied as their rows, unchanged — positions, ids, times,
hashes — so the chain holds in the target exactly as in the source; models are
registered by events, so the registry moves with them. A copy that was interrupted is
run again: blobs already in the target are skipped by digest, events by position, after
checking that what the target holds is this store's own history. The projections are
then rebuilt in the target from its log.

The signing key and the other files of the store folder (checkpoint.key, checkpoint.pub,
the Content Credentials certificate, HEAD) are not in the database: they stay where they
are, and `files_to_copy` names those a machine that signs needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from strata.core.config import Settings
from strata.core.errors import BlobCorrupt, InvalidInput, RetryableError, VerificationFailed
from strata.core.ledger.log import events_table
from strata.core.provenance.keys import key_paths
from strata.core.provenance.verify import verify
from strata.core.storage.db import write_transaction
from strata.core.store import Store

_c = events_table.c
PAGE = 500


@dataclass
class TransferReport:
    target: str
    blobs_copied: int = 0
    blobs_present: int = 0  # already in the target (an earlier, interrupted run)
    events_copied: int = 0
    events_present: int = 0
    blobs_verified: int = 0
    projections_rebuilt_from: int = 0
    files_to_copy: list[Path] = field(default_factory=list)


# What a caller hears as the copy goes: ("blob" | "events", how many so far of that kind).
Progress = Callable[[str, int], None]


def migrate_store(source: Store, database_url: str, blob_url: str | None = None, *,
                  page: int = PAGE, progress: Progress | None = None) -> TransferReport:
    """Copy `source` to the database at `database_url` and the blob store at `blob_url`
    (default: the source's own blob store, nothing to copy), verify the copy and rebuild
    its projections. Run again after an interruption, it continues.

    InvalidInput when the target is the source itself, cannot be parsed, or already holds
    another history (naming the first position that differs); RetryableError when it
    cannot be reached; VerificationFailed when the copy does not verify.
    """
    try:
        target_key = make_url_key(database_url)
    except ArgumentError:
        raise InvalidInput(f"--to {database_url!r} is not a database URL (expected "
                           "postgresql+psycopg://user@host/database)") from None
    if target_key == make_url_key(source.settings.effective_database_url):
        raise InvalidInput("the target database is the store's own database; name another "
                           "one with --to")
    mine = source.settings
    target_settings = Settings(home=mine.home, database_url=database_url,
                               blob_url=blob_url or mine.blob_url,
                               max_image_pixels=mine.max_image_pixels,
                               max_upload_bytes=mine.max_upload_bytes)
    try:
        target = Store.open(target_settings, create=True)
    except OperationalError as exc:
        raise RetryableError(f"cannot reach the target database {target_key}: "
                             f"{str(exc.orig or exc).strip()}") from None
    try:
        report = TransferReport(target.engine.url.render_as_string(hide_password=True))
        tell = progress or (lambda kind, count: None)
        _check_same_history(source, target)
        if mine.blob_location != target_settings.blob_location:
            _copy_blobs(source, target, report, tell)
        _copy_events(source, target, report, page, tell)
        _verify_copy(source, target, report)
        report.projections_rebuilt_from = target.projections.rebuild()
        report.files_to_copy = [path for path in key_paths(source.settings.resolved_home)
                                if path.exists()]
        return report
    finally:
        target.close()


def make_url_key(url: str) -> str:
    """A database URL without its password, to tell whether two URLs name one database."""
    return make_url(url).render_as_string(hide_password=True)


def _check_same_history(source: Store, target: Store) -> None:
    """Every event the target holds is the source's event at that position, hash for hash
    (the hash covers the whole event and its predecessor)."""
    held = target.ledger.head_position()
    if held == 0:
        return
    theirs = _hashes(target, held)
    ours = _hashes(source, held)
    for position in range(1, held + 1):
        mine, found = next(ours, None), next(theirs)
        if mine != found:
            what = ("the store has no event there" if mine is None
                    else f"hash {found[:16]}… instead of {mine[:16]}…")
            raise InvalidInput(
                f"the target {target.engine.url.render_as_string(hide_password=True)} "
                f"already holds another history: position {position} differs ({what}); "
                "copy into an empty database"
            )


def _hashes(store: Store, up_to: int) -> Iterator[str]:
    for event in store.ledger.read_all(to_position=up_to):
        yield event.hash


def _copy_blobs(source: Store, target: Store, report: TransferReport, tell: Progress) -> None:
    """Every blob of the source, re-hashed on the way: a corrupt source blob is named and
    never stored."""
    for digest in source.blobs.iter_digests():
        if target.blobs.exists(digest):
            report.blobs_present += 1
            continue
        with source.blobs.open(digest) as stream, \
                target.blobs.staging([stream]) as (staged,):
            if staged.info.digest != digest:
                raise BlobCorrupt(f"blob {digest} is corrupt in the store being copied: its "
                                  "bytes no longer hash to it; nothing was copied for it")
            target.blobs.publish(staged)
        report.blobs_copied += 1
        tell("blob", report.blobs_copied)


def _copy_events(source: Store, target: Store, report: TransferReport, page: int,
                 tell: Progress) -> None:
    """The source's events past the target's head, as rows, a page per transaction."""
    report.events_present = target.ledger.head_position()
    after = report.events_present
    while True:
        with source.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(
                select(events_table).where(_c.position > after).order_by(_c.position)
                .limit(page))]
        if not rows:
            return
        with write_transaction(target.engine) as conn:
            # Under the write lock: nobody else appended meanwhile (workers must wait).
            head = conn.scalar(select(func.coalesce(func.max(_c.position), 0)))
            if head != after:
                raise InvalidInput(f"someone appended to the target while it was copied to "
                                   f"(its head is {head}, expected {after}); stop them and "
                                   "run migrate-store again")
            conn.execute(insert(events_table), rows)
        after = rows[-1]["position"]
        report.events_copied += len(rows)
        tell("events", report.events_copied)


def _verify_copy(source: Store, target: Store, report: TransferReport) -> None:
    """The target's chain from its first event and its blobs re-hashed; its last event the
    source's last event; every blob of the source present in the target."""
    checked = verify(target.ledger, target.blobs, rehash=True)
    problems = checked.problems()
    problems += [f"blob {digest} was not copied" for digest in source.blobs.iter_digests()
                 if not target.blobs.exists(digest)]
    if ([e.hash for e in source.ledger.read_last(1)]
            != [e.hash for e in target.ledger.read_last(1)]):
        problems.append("the target's last event is not the store's last event")
    if problems:
        raise VerificationFailed("the copy does not verify: " + "; ".join(problems))
    report.blobs_verified = checked.blobs_checked
