"""Running a parsed find query against the indexes: one SQL statement per search.

Every term becomes a condition on `find_assets` (mostly `digest IN (subquery)` over the
index tables and the other projections: selections, reviews, finals, jobs, branch moves,
derivations), combined as the query combines its terms. `like:` (and `--similar`) first
finds its near-duplicates through the multi-index hash (core.find.hamming) and checks each
candidate's exact distance; the results are then ordered by that distance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    exists,
    func,
    literal_column,
    not_,
    or_,
    select,
    text,
    union,
)

from strata.core.errors import InvalidInput
from strata.core.find import hamming
from strata.core.find.query import (
    REVIEWS,
    SPECIAL_FIELDS,
    All,
    Any_,
    Node,
    Not,
    Term,
    is_number,
    parse,
)
from strata.core.find.schema import FindAssetRow, FindParamRow, FindTextRow
from strata.core.projections.base import table
from strata.core.storage.schema import (
    AssetRow,
    BranchMoveRow,
    DerivationRow,
    FinalRow,
    JobRow,
    ReviewRow,
    SelectionRow,
)

if TYPE_CHECKING:
    from strata.core.service import Strata

# Near-duplicates one `like:` may match: they travel to the database as one IN list.
MAX_SIMILAR = 20_000
MAX_LIMIT = 1000
# Layers whose prompts made a picture from nothing (an import carries another tool's).
ROOT_LAYERS = ("generation", "import")

_a = table(FindAssetRow)
_p = table(FindParamRow)
_t = table(FindTextRow)
_d = table(DerivationRow)


@dataclass(frozen=True)
class SearchRow:
    digest: str
    media_type: str
    layer: str
    operation: str
    created_at: str
    actor: str | None
    position: int
    distance: int | None  # bits from the --similar (or first like:) asset's hash

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "media_type": self.media_type, "layer": self.layer,
                "operation": self.operation, "created_at": self.created_at,
                "actor": self.actor, "position": self.position, "distance": self.distance}


@dataclass(frozen=True)
class SearchResult:
    total: int  # every match, of which `rows` is the page asked for
    rows: list[SearchRow] = field(default_factory=list)
    offset: int = 0
    similar_to: str | None = None  # the digest distances are measured from

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "offset": self.offset, "similar_to": self.similar_to,
                "rows": [r.to_json() for r in self.rows]}


def search(
    strata: Strata, query: str, *, similar: str | None = None, distance: int = 8,
    limit: int = 50, offset: int = 0, as_of: int | None = None,
) -> SearchResult:
    """The assets that match `query` (docs/find.md), newest first, or nearest first when
    similarity is asked for (`similar`, or a `like:` term)."""
    tree = parse(query)  # refuses a malformed query before anything is read
    hamming.check_distance(distance)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"--limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if offset < 0:
        raise InvalidInput(f"--offset must be 0 or more, not {offset}")
    with strata.view(as_of) as conn:
        compiler = _Compiler(strata, conn, query, distance)
        reference = compiler.reference(similar) if similar is not None else None
        conditions = [compiler.node(tree)] if tree is not None else []
        if reference is not None:
            conditions.append(_a.c.digest.in_(compiler.similar_set(reference)))
        elif compiler.first_like is not None:
            reference = compiler.first_like
        where = and_(*conditions) if conditions else None
        columns = select(_a.c.digest, _a.c.media_type, _a.c.layer, _a.c.operation, _a.c.made,
                         _a.c.actor, _a.c.position, _a.c.phash)
        if where is not None:
            columns = columns.where(where)
        if reference is None:
            return _newest_first(conn, columns, where, limit, offset)
        return _nearest_first(conn, columns, reference, limit, offset)


@dataclass(frozen=True)
class _Reference:
    digest: str
    hashed: hamming.SplitHash


def _newest_first(conn: Connection, columns: Select, where: ColumnElement[bool] | None,
                  limit: int, offset: int) -> SearchResult:
    # The total comes with the page, from the same pass over the matches.
    rows = conn.execute(columns.add_columns(func.count().over().label("total"))
                        .order_by(_a.c.position.desc(), _a.c.digest)
                        .limit(limit).offset(offset)).all()
    if rows:
        total = rows[0].total
    else:  # a page past the end: count on its own
        counted = select(func.count()).select_from(_a)
        total = conn.scalar(counted.where(where) if where is not None else counted) or 0
    return SearchResult(total, [_row(r, None) for r in rows], offset)


def _nearest_first(conn: Connection, columns: Select, reference: _Reference, limit: int,
                   offset: int) -> SearchResult:
    # The matches are near-duplicates of the reference: few, so they are ordered here.
    found = []
    for row in conn.execute(columns).all():
        bits = (hamming.hamming(hamming.unsigned(row.phash), reference.hashed.unsigned)
                if row.phash is not None else None)
        found.append(_row(row, bits))
    found.sort(key=lambda r: (r.distance if r.distance is not None else 65, -r.position,
                              r.digest))
    return SearchResult(len(found), found[offset:offset + limit], offset, reference.digest)


def _row(row: Any, distance: int | None) -> SearchRow:
    return SearchRow(row.digest, row.media_type, row.layer, row.operation, row.made,
                     row.actor, row.position, distance)


class _Compiler:
    """Turns query terms into conditions on find_assets, for one connection's dialect."""

    def __init__(self, strata: Strata, conn: Connection, query: str, distance: int) -> None:
        self.strata = strata
        self.conn = conn
        self.query = query
        self.distance = distance
        self.sqlite = conn.dialect.name == "sqlite"
        self.first_like: _Reference | None = None
        self.counter = 0

    def node(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, Term):
            return self.term(node)
        if isinstance(node, Not):
            return not_(self.node(node.node))
        if isinstance(node, All):
            # One term drives (its digests are looked up first); parameter terms beside it
            # are checked per candidate (EXISTS on the asset's own rows) instead of each
            # gathering every digest it matches: a broad range (seed>=0) then costs nothing.
            drivers = [n for n in node.nodes
                       if not (isinstance(n, Term) and _is_parameter(n))]
            parts: list[ColumnElement[bool]] = []
            for n in node.nodes:
                if isinstance(n, Term) and _is_parameter(n) and (drivers or parts):
                    parts.append(self.parameter(n, correlated=True))
                else:
                    parts.append(self.node(n))
            return and_(*parts)
        assert isinstance(node, Any_)
        return or_(*(self.node(n) for n in node.nodes))

    # --- assets named in a query -----------------------------------------------------------

    def asset(self, ref: str) -> str:
        return self.strata.resolve_asset(ref, conn=self.conn)

    def reference(self, ref: str) -> _Reference:
        digest = self.asset(ref)
        phash = self.conn.scalar(select(_a.c.phash).where(_a.c.digest == digest))
        if phash is None:
            raise InvalidInput(f"{ref!r} has no perceptual hash (only images have one): "
                               "it cannot be compared for similarity")
        return _Reference(digest, hamming.of_unsigned(hamming.unsigned(phash)))

    def similar_set(self, reference: _Reference) -> list[str]:
        """Every asset within the distance of the reference, found through the chunk
        indexes and checked exactly."""
        rows = self.conn.execute(select(_a.c.digest, _a.c.phash).where(
            hamming.candidates(reference.hashed, self.distance))).all()
        found = [r.digest for r in rows if hamming.hamming(
            hamming.unsigned(r.phash), reference.hashed.unsigned) <= self.distance]
        if len(found) > MAX_SIMILAR:
            raise InvalidInput(
                f"{len(found)} assets lie within {self.distance} bits of "
                f"{reference.digest[:19]}…, more than {MAX_SIMILAR}: give a smaller --distance")
        return found

    # --- terms -----------------------------------------------------------------------------

    def term(self, term: Term) -> ColumnElement[bool]:
        name, value = term.field, term.value
        if name is None:
            return _a.c.digest.in_(self.texts(term, None))
        if name == "prompt":
            return _a.c.digest.in_(self.texts(term, "prompt"))
        if name == "negative":
            return _a.c.digest.in_(self.texts(term, "negative"))
        if name == "root-prompt":
            return self.root_prompt(term)
        if name in ("from", "into"):
            return _a.c.digest.in_(self.lineage(self.asset(value), down=name == "from"))
        if name == "like":
            reference = self.reference(value)
            if self.first_like is None:
                self.first_like = reference
            return _a.c.digest.in_(self.similar_set(reference))
        if name == "layer":
            return _a.c.layer == value.lower()
        if name == "op":
            return _a.c.operation == value.lower()
        if name == "actor":
            return _a.c.actor == value
        if name == "media":
            kind = value.lower()
            return _a.c.media_type == kind if "/" in kind else _a.c.media_type.startswith(
                kind + "/")
        if name == "model":
            return self.model(value.lower())
        if name == "branch":
            return self.branch(value)
        if name == "review":
            reviews = table(ReviewRow)
            return _a.c.digest.in_(select(reviews.c.digest).where(
                reviews.c.verdict == REVIEWS[value.lower()]))
        if name == "is":
            return self.flag(value.lower())
        if name == "rating":
            selections = table(SelectionRow)
            return _a.c.digest.in_(select(selections.c.digest).where(
                _compare(selections.c.rating, term, int)))
        if name == "made":
            return _made(term)
        return self.parameter(term)

    def texts(self, term: Term, kind: str | None) -> Select:
        """The digests whose prompts (of `kind`; None: prompts and negative prompts)
        contain the term's word or phrase (a word ending in * is a prefix)."""
        self.counter += 1
        key = f"fts{self.counter}"
        prefix = not term.quoted and term.value.endswith("*") and len(term.value) > 1
        words = term.value.rstrip("*") if prefix else term.value
        query = select(_t.c.digest)
        if self.sqlite:
            expression = '"' + words.replace('"', '""') + '"' + ("*" if prefix else "")
            matched = text(f"SELECT rowid FROM find_texts_fts WHERE find_texts_fts MATCH :{key}"
                           ).bindparams(**{key: expression})
            query = query.where(literal_column("find_texts.rowid").in_(matched))
        else:
            tsv: ColumnElement[Any] = literal_column("find_texts.tsv")
            if prefix:
                tokens = re.findall(r"\w+", words.lower())
                tsquery = func.to_tsquery("simple", " <-> ".join(
                    [*tokens[:-1], tokens[-1] + ":*"]))
            else:
                tsquery = func.phraseto_tsquery("simple", words)
            query = query.where(tsv.op("@@")(tsquery))
        return query.where(_t.c.kind == kind) if kind else query

    def root_prompt(self, term: Term) -> ColumnElement[bool]:
        roots = (select(_t.c.digest.label("digest")).join(_a, _a.c.digest == _t.c.digest)
                 .where(_t.c.digest.in_(self.texts(term, "prompt")),
                        _a.c.layer.in_(ROOT_LAYERS)))
        self.counter += 1
        down = roots.cte(f"root_{self.counter}", recursive=True)
        step = _d.alias(f"root_step_{self.counter}")
        down = down.union(select(step.c.output_digest).where(step.c.input_digest == down.c.digest))
        return _a.c.digest.in_(select(down.c.digest))

    def lineage(self, digest: str, down: bool) -> Select:
        """The descendants (down) or ancestors of `digest`, itself excluded."""
        self.counter += 1
        near, far = (_d.c.input_digest, _d.c.output_digest) if down else (
            _d.c.output_digest, _d.c.input_digest)
        walk = select(far.label("digest")).where(near == digest).cte(
            f"walk_{self.counter}", recursive=True)
        step = _d.alias(f"walk_step_{self.counter}")
        step_near, step_far = (step.c.input_digest, step.c.output_digest) if down else (
            step.c.output_digest, step.c.input_digest)
        walk = walk.union(select(step_far).where(step_near == walk.c.digest))
        return select(walk.c.digest).where(walk.c.digest != digest)

    def model(self, value: str) -> ColumnElement[bool]:
        """A model by name (Strata's registered name, another tool's checkpoint name), or
        by a prefix of its weights' digest or the hash another tool recorded."""
        prefix = value.endswith("*")
        name = value.rstrip("*")
        by_name = _p.c.txt.startswith(name) if prefix else _p.c.txt == name
        matches = [and_(_p.c.name.in_(("model", "model.name")), by_name)]
        hexed = name.removeprefix("sha256:")
        if len(hexed) >= 4 and re.fullmatch(r"[0-9a-f]+", hexed):
            matches += [and_(_p.c.name == "model.digest", _p.c.txt.startswith(f"sha256:{hexed}")),
                        and_(_p.c.name == "model.hash", _p.c.txt.startswith(hexed))]
        return _a.c.digest.in_(select(_p.c.digest).where(or_(*matches)))

    def branch(self, name: str) -> ColumnElement[bool]:
        """Made by a job on the branch, or ever its head."""
        assets, jobs, moves = table(AssetRow), table(JobRow), table(BranchMoveRow)
        made_on = (select(assets.c.digest).join(jobs, jobs.c.job_id == assets.c.job_id)
                   .where(jobs.c.branch == name))
        heads = select(moves.c.head).where(moves.c.branch == name, moves.c.head.is_not(None))
        return _a.c.digest.in_(union(made_on, heads))

    def flag(self, value: str) -> ColumnElement[bool]:
        if value == "final":
            return _a.c.digest.in_(select(table(FinalRow).c.digest))
        selections = table(SelectionRow)
        return _a.c.digest.in_(select(selections.c.digest).where(selections.c.decision == value))

    def parameter(self, term: Term, correlated: bool = False) -> ColumnElement[bool]:
        """A recipe entry by name: numbers compared, text matched exactly or by prefix;
        `correlated`: as a check of each candidate asset rather than a set of digests."""
        named = _p.c.name == term.field
        # Per candidate, the asset's own rows are found by key (digest, name); the values
        # are wrapped so that no planner walks the (name, value) index for every candidate.
        num: Any = _p.c.num + 0 if correlated else _p.c.num
        txt: Any = _p.c.txt + "" if correlated else _p.c.txt
        if term.op in (":", "=") and not is_number(term.value):
            wanted = term.value.lower()
            if wanted.endswith("*") and len(wanted) > 1:
                matched = txt.startswith(wanted.rstrip("*"), autoescape=True)
            else:
                matched = txt == wanted
        elif term.op in (":", "="):
            matched = num == float(term.value)
            if re.fullmatch(r"[+-]?\d+", term.value) and abs(int(term.value)) > 2**53:
                # Past 2**53 a double cannot tell neighbouring integers (large seeds)
                # apart; integers are kept as text too.
                matched = and_(matched, or_(_p.c.txt.is_(None), txt == str(int(term.value))))
        else:
            matched = _compare(num, term, float)
        if correlated:
            return exists().where(_p.c.digest == _a.c.digest, named, matched)
        return _a.c.digest.in_(select(_p.c.digest).where(named, matched))


def _is_parameter(term: Term) -> bool:
    return term.field not in SPECIAL_FIELDS


def _compare(column: Any, term: Term, kind: type) -> ColumnElement[bool]:
    if term.op == "..":
        parts = []
        if term.value:
            parts.append(column >= kind(term.value))
        if term.high:
            parts.append(column <= kind(term.high))
        return and_(*parts)
    value = kind(term.value)
    return {">=": column >= value, "<=": column <= value, ">": column > value,
            "<": column < value}.get(term.op, column == value)


def _made(term: Term) -> ColumnElement[bool]:
    """`made` compares whole days (UTC) with the ISO times events are recorded at."""
    def day_after(text_date: str) -> str:
        return (date.fromisoformat(text_date) + timedelta(days=1)).isoformat()

    made = _a.c.made
    if term.op == "..":
        parts = []
        if term.value:
            parts.append(made >= term.value)
        if term.high:
            parts.append(made < day_after(term.high))
        return and_(*parts)
    return {">=": made >= term.value, ">": made >= day_after(term.value),
            "<": made < term.value, "<=": made < day_after(term.value)}.get(
        term.op, and_(made >= term.value, made < day_after(term.value)))
