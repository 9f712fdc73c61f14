"""Running a parsed find query against the indexes (docs/find.md, "How a search runs").

Every term becomes a check of one `find_assets` row (an EXISTS on the asset's own index
rows, keyed by its digest, or membership of a small set: decisions, lineage, branch), and
most terms can also drive: list the digests that satisfy them straight from an index (the
full-text index, a (name, value) range of parameters, a hash lookup). A search then:

1. counts each top-level driver's list up to a cap and gathers the matches from the
   shortest (short lists of similar length intersected first), every other term checked
   per candidate — in memory against its list when that is short — stopping one past
   `max(TOTAL_CAP, offset + limit)`: the total is exact up to there, and beyond it is a
   lower bound (`total_exact` false);
2. if that gathered every match, orders them here (newest first) and reads the page;
3. otherwise the matches are many, so the page is read walking the assets newest first
   (the position index) and checking each: it stops after `offset + limit` matches.

So the cost follows the shortest list and the page's depth, never the number of matches.
`like:` (and `--similar`) first finds its near-duplicates' hashes through the
multi-index hash (core.find.hamming); the results are then ordered by distance.

On SQLite, without table statistics, the planner is kept to these plans by writing the
queries so (the driver outermost, a column wrapped in `|| ''` where its index would lead
the planner away from the walk); PostgreSQL plans from its own statistics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BindParameter,
    Column,
    ColumnElement,
    Connection,
    Select,
    String,
    and_,
    bindparam,
    column,
    func,
    literal_column,
    not_,
    or_,
    select,
    union,
)
from sqlalchemy import table as lightweight_table
from sqlalchemy.sql.selectable import Alias
from sqlalchemy.sql.visitors import iterate, replacement_traverse

from strata.core.errors import InvalidInput
from strata.core.find import hamming
from strata.core.find.query import (
    REVIEWS,
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

# Near-duplicate hashes one `like:` may match: they travel to the database as one IN list.
MAX_SIMILAR = 20_000
MAX_LIMIT = 1000
# The total is counted exactly up to here (or to the end of the page asked for, if further).
TOTAL_CAP = 1000
# A driving term's rows are counted up to here (half of it but for the full-text
# index, whose lists count far more cheaply) to choose the one that lists fewest; a list
# shorter than that is short: read whole once, it checks assets in memory. Another short
# list is intersected with the fewest if it is at most INTERSECT_RATIO times as long as
# what is left, until at most FEW_LEFT digests are left; those travel back as one IN list
# and are checked against the other terms one by one.
ESTIMATE_CAP = 10_000
INTERSECT_RATIO = 2
FEW_LEFT = 200
# Layers whose prompts made a picture from nothing (an import carries another tool's).
ROOT_LAYERS = ("generation", "import")
_FULL_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

_a = table(FindAssetRow)
_p = table(FindParamRow)
_t = table(FindTextRow)
_d = table(DerivationRow)
# The FTS5 table (SQLite): its rowids are find_texts' rowids.
_fts = lightweight_table("find_texts_fts", column("rowid"))
_COLUMNS = (_a.c.digest, _a.c.media_type, _a.c.layer, _a.c.operation, _a.c.made, _a.c.actor,
            _a.c.position, _a.c.phash)


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
    # Every match when `total_exact`; otherwise a lower bound (the count stopped there):
    # there are at least `total` matches.
    total: int
    rows: list[SearchRow] = field(default_factory=list)
    offset: int = 0
    similar_to: str | None = None  # the digest distances are measured from
    total_exact: bool = True

    @property
    def total_text(self) -> str:
        """The total for people: `1,000+` when it was not counted to the end."""
        return f"{self.total:,}" if self.total_exact else f"{self.total - 1:,}+"

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "total_exact": self.total_exact, "offset": self.offset,
                "similar_to": self.similar_to, "rows": [r.to_json() for r in self.rows]}


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
        parts = list(tree.nodes) if isinstance(tree, All) else [tree] if tree else []
        # The cheapest checks first: a planner runs them in the order written.
        parts.sort(key=_cost)
        checks = [compiler.node(n) for n in parts]
        if reference is not None:
            checks.append(_a.c.phash.in_(compiler.similar_hashes(reference)))
            return _nearest_first(conn, checks, reference, limit, offset)
        if compiler.first_like is not None:
            return _nearest_first(conn, checks, compiler.first_like, limit, offset)
        drivers = [(i, compiler.driver(n)) for i, n in enumerate(parts)]
        return _newest_first(conn, checks, _drive(conn, [(i, d) for i, d in drivers if d]),
                             limit, offset)


@dataclass(frozen=True)
class _Reference:
    digest: str
    hashed: hamming.SplitHash


@dataclass(frozen=True)
class _Driver:
    rows: Select  # the digests (repeated when several index rows hold for one asset)
    estimate: Select  # rows as many as those, or more, cheaper to count
    indexed: bool  # rows from the find indexes: each names an asset of find_assets
    cap: int = ESTIMATE_CAP // 2  # counted up to here (a full-text list counts cheaply)


@dataclass(frozen=True)
class _Drive:
    """Where the matches are gathered from: the rows of one driving term, streamed (the
    others checked per asset), or the digests several terms' lists have in common; and
    the terms whose lists are short enough to be read whole once (for the walk)."""
    used: frozenset[int]  # the top-level terms it covers (not checked again)
    rows: Select | None = None
    indexed: bool = False  # rows from the find indexes: each names an asset of find_assets
    common: list[str] | None = None
    short: dict[int, Select] = field(default_factory=dict)


def _drive(conn: Connection, drivers: list[tuple[int, _Driver]]) -> _Drive | None:
    """The cheapest way in: the driver that lists fewest rows (each counted up to
    ESTIMATE_CAP); then, while another lists not many more rows than are left, the digests
    they have in common (reading a list from its index costs less than checking as many
    assets one by one), until few are left."""
    if not drivers:
        return None
    counted = [(conn.scalar(select(func.count()).select_from(
        driver.estimate.limit(driver.cap).subquery())) or 0, i, driver) for i, driver in drivers]
    # (long, rows, term): a list counted to its cap is long, whatever it counted
    sized = sorted((size >= driver.cap, size, i, driver) for size, i, driver in counted)
    short = {i: driver.rows for long, _, i, driver in sized if not long}
    long, size, index, fewest = sized[0]
    if long or len(sized) == 1 or sized[1][0] or sized[1][1] > INTERSECT_RATIO * size:
        return _Drive(frozenset((index,)), fewest.rows, fewest.indexed, short=short)
    common = set(conn.scalars(fewest.rows))
    used = [index]
    for long, size, index, driver in sized[1:]:
        if len(common) <= FEW_LEFT or long or size > INTERSECT_RATIO * len(common):
            break
        common &= set(conn.scalars(driver.rows))
        used.append(index)
    return _Drive(frozenset(used), common=sorted(common), short=short)


def _newest_first(conn: Connection, checks: list[ColumnElement[bool]], drive: _Drive | None,
                  limit: int, offset: int) -> SearchResult:
    bound = max(TOTAL_CAP, offset + limit)
    # 1. Gather the matches (one past the bound) from the drivers, or the whole table.
    short = drive.short if drive is not None else {}
    rest = [i for i in range(len(checks)) if drive is None or i not in drive.used]
    others = [checks[i] for i in rest]
    if drive is None:
        gathered = select(_a.c.digest).where(*others)
    elif drive.common is not None:
        gathered = select(_a.c.digest).where(_a.c.digest.in_(drive.common), *others)
    else:
        # The driver's rows on the outside (a join would let the planner walk find_assets
        # instead), each asset looked up by key only if another term must be checked.
        assert drive.rows is not None
        rows = drive.rows.subquery("driver")
        gathered = select(rows.c.digest).distinct()
        if drive.indexed and not any(map(_reads_asset_row, others)):
            # Checks of the asset's index rows only: keyed by the driver's digest directly,
            # the terms with short lists first, against those lists read once.
            def by_driver(element: Any, **_: Any) -> Any:
                return rows.c.digest if element is _a.c.digest else None

            gathered = gathered.where(
                *(rows.c.digest.in_(short[i]) for i in rest if i in short),
                *(replacement_traverse(checks[i], {}, by_driver) for i in rest
                  if i not in short))
        else:
            gathered = gathered.where(_exists(_a.c.digest == rows.c.digest, *others))
    digests = list(conn.scalars(gathered.limit(bound + 1)))
    if len(digests) <= bound:
        # 2. Every match is here: read them, order them, keep the page.
        matches = sorted(conn.execute(select(*_COLUMNS).where(_a.c.digest.in_(digests))),
                         key=lambda m: (m.position, m.digest), reverse=True)
        return SearchResult(len(matches), [_row(m, None) for m in
                                           matches[offset:offset + limit]], offset)
    # 3. Many matches: walk the assets newest first, checking each, to the page's end. A
    # term with a short list is checked against that list, read once (a lookup in memory);
    # any other, by the asset's own index rows (a lookup on disk). The digest is wrapped
    # (`|| ''`, the same text) so that no planner looks each listed asset up and sorts.
    walk = (select(*_COLUMNS).where(*((_a.c.digest + "").in_(short[i]) if i in short else c
                                      for i, c in enumerate(checks)))
            .order_by(_a.c.position.desc(), _a.c.digest.desc()).limit(limit).offset(offset))
    return SearchResult(len(digests), [_row(r, None) for r in conn.execute(walk)], offset,
                        total_exact=False)


def _nearest_first(conn: Connection, checks: list[ColumnElement[bool]], reference: _Reference,
                   limit: int, offset: int) -> SearchResult:
    # The matches are near-duplicates of the reference: few, so they are ordered here.
    found = []
    for row in conn.execute(select(*_COLUMNS).where(*checks)).all():
        bits = (hamming.hamming(hamming.unsigned(row.phash), reference.hashed.unsigned)
                if row.phash is not None else None)
        found.append(_row(row, bits))
    found.sort(key=lambda r: (-(r.distance if r.distance is not None else 65), r.position,
                              r.digest), reverse=True)
    return SearchResult(len(found), found[offset:offset + limit], offset, reference.digest)


def _row(row: Any, distance: int | None) -> SearchRow:
    return SearchRow(row.digest, row.media_type, row.layer, row.operation, row.made,
                     row.actor, row.position, distance)


class _Compiler:
    """Turns query terms into checks of a find_assets row, and into drivers (the digests a
    term holds for, listed from an index), for one connection's dialect."""

    def __init__(self, strata: Strata, conn: Connection, query: str, distance: int) -> None:
        self.strata = strata
        self.conn = conn
        self.query = query
        self.distance = distance
        self.sqlite = conn.dialect.name == "sqlite"
        self.first_like: _Reference | None = None
        self.counter = 0
        self._assets: dict[str, str] = {}
        self._references: dict[str, _Reference] = {}
        self._similar: dict[str, list[int]] = {}

    def node(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, Term):
            return self.term(node)
        if isinstance(node, Not):
            return not_(self.node(node.node))
        if isinstance(node, All):
            return and_(*(self.node(n) for n in node.nodes))
        assert isinstance(node, Any_)
        return or_(*(self.node(n) for n in node.nodes))

    def driver(self, node: Node) -> _Driver | None:
        """The digests a top-level term holds for, listed from an index; None for what
        cannot list its assets (a negation, an OR, a group)."""
        if not isinstance(node, Term):
            return None
        if self.sqlite and node.field in (None, "prompt", "negative"):
            # Straight from the full-text index, streamed (an IN list would be built whole
            # first), and estimated from it alone.
            texts, fts = self.alias(FindTextRow), _fts.alias(f"f{self.counter}")
            match = self.fts_expression(node)
            matched = literal_column(f"{fts.name}.find_texts_fts").op("MATCH")(match)
            rows = (select(texts.c.digest)
                    .select_from(fts.join(texts, literal_column(f"{texts.name}.rowid")
                                          == fts.c.rowid))
                    .where(matched, *([texts.c.kind == node.field] if node.field else [])))
            return _Driver(rows, select(fts.c.rowid).where(matched), indexed=True,
                           cap=ESTIMATE_CAP)
        listed = self.digests(node)
        if listed is None:
            return None
        return _Driver(listed, listed, indexed=node.field not in _SET_FIELDS)

    def alias(self, model: type) -> Alias:
        self.counter += 1
        return table(model).alias(f"{table(model).name[5]}{self.counter}")

    # --- assets named in a query -----------------------------------------------------------

    def asset(self, ref: str) -> str:
        if ref not in self._assets:
            if _FULL_DIGEST.fullmatch(ref) and self.conn.scalar(
                    select(_a.c.digest).where(_a.c.digest == ref)) is not None:
                self._assets[ref] = ref  # a whole digest (as the web page sends them)
            else:
                self._assets[ref] = self.strata.resolve_asset(ref, conn=self.conn)
        return self._assets[ref]

    def reference(self, ref: str) -> _Reference:
        if ref not in self._references:
            digest = self.asset(ref)
            phash = self.conn.scalar(select(_a.c.phash).where(_a.c.digest == digest))
            if phash is None:
                raise InvalidInput(f"{ref!r} has no perceptual hash (only images have one): "
                                   "it cannot be compared for similarity")
            self._references[ref] = _Reference(
                digest, hamming.of_unsigned(hamming.unsigned(phash)))
        return self._references[ref]

    def similar_hashes(self, reference: _Reference) -> list[int]:
        """Every stored hash within the distance of the reference (core.find.hamming)."""
        if reference.digest not in self._similar:
            found = hamming.within(self.conn, reference.hashed, self.distance)
            if len(found) > MAX_SIMILAR:
                raise InvalidInput(
                    f"{len(found)} perceptual hashes lie within {self.distance} bits of "
                    f"{reference.digest[:19]}…, more than {MAX_SIMILAR}: give a smaller "
                    "--distance")
            self._similar[reference.digest] = found
        return self._similar[reference.digest]

    # --- terms -----------------------------------------------------------------------------

    def term(self, term: Term) -> ColumnElement[bool]:
        """The term as a check of one find_assets row."""
        name = term.field
        if name is None or name in ("prompt", "negative"):
            texts = self.alias(FindTextRow)
            return _exists(texts.c.digest == _a.c.digest,
                                  self.text_match(term, name, texts))
        if name == "like":
            return _a.c.phash.in_(self.like(term.value))
        own = self.own_column(term)
        if own is not None:
            return own
        if name == "model" or name not in _SET_FIELDS:
            params = self.alias(FindParamRow)
            return _exists(params.c.digest == _a.c.digest,
                                  self.parameter(term, params, correlated=True))
        digests = self.digests(term)
        assert digests is not None
        return _a.c.digest.in_(digests)

    def digests(self, term: Term) -> Select | None:
        """The term as the digests it holds for, listed from an index."""
        name, value = term.field, term.value
        if name is None or name in ("prompt", "negative"):
            texts = self.alias(FindTextRow)
            return select(texts.c.digest).where(self.text_match(term, name, texts))
        if name == "like":
            return select(_a.c.digest).where(_a.c.phash.in_(self.like(value)))
        own = self.own_column(term, check=False)
        if own is not None:
            return select(_a.c.digest).where(own)
        if name == "root-prompt":
            return self.root_prompt(term)
        if name in ("from", "into"):
            return self.lineage(self.asset(value), down=name == "from")
        if name == "branch":
            return self.branch(value)
        if name == "review":
            reviews = table(ReviewRow)
            return select(reviews.c.digest).where(reviews.c.verdict == REVIEWS[value.lower()])
        if name == "is":
            return self.flag(value.lower())
        if name == "rating":
            selections = table(SelectionRow)
            return select(selections.c.digest).where(_compare(selections.c.rating, term, int))
        params = self.alias(FindParamRow)
        return select(params.c.digest).where(self.parameter(term, params, correlated=False))

    def own_column(self, term: Term, check: bool = True) -> ColumnElement[bool] | None:
        """A term on find_assets' own columns; None for any other. As a `check` of rows
        reached otherwise the columns are wrapped (`|| ''`, the same text) so that no
        planner leaves the newest-first walk of the position index for the column's own
        index (SQLite, without statistics, would, and then sort every match)."""
        def column(name: str) -> Any:
            return _a.c[name] + "" if check else _a.c[name]

        name, value = term.field, term.value
        if name == "layer":
            return column("layer") == value.lower()
        if name == "op":
            return column("operation") == value.lower()
        if name == "actor":
            return column("actor") == value
        if name == "media":
            kind = value.lower()
            return column("media_type") == kind if "/" in kind else column(
                "media_type").startswith(kind + "/")
        if name == "made":
            return _made(term, column("made"))
        return None

    def like(self, ref: str) -> list[int]:
        reference = self.reference(ref)
        if self.first_like is None:
            self.first_like = reference
        return self.similar_hashes(reference)

    def text_match(self, term: Term, kind: str | None, texts: Alias) -> ColumnElement[bool]:
        """That a find_texts row (of `texts`) of `kind` (None: prompts and negative
        prompts) contains the term's word or phrase (a word ending in * is a prefix)."""
        words, prefix = _words(term)
        matched: ColumnElement[bool]
        if self.sqlite:
            fts = _fts.alias(f"f{texts.name}")
            rowids = select(fts.c.rowid).where(literal_column(
                f"{fts.name}.find_texts_fts").op("MATCH")(self.fts_expression(term)))
            matched = literal_column(f"{texts.name}.rowid").in_(rowids)
        else:
            tsv: ColumnElement[Any] = literal_column(f"{texts.name}.tsv")
            if prefix:
                tokens = re.findall(r"\w+", words.lower())
                tsquery = func.to_tsquery("simple", " <-> ".join(
                    [*tokens[:-1], tokens[-1] + ":*"]))
            else:
                tsquery = func.phraseto_tsquery("simple", words)
            matched = tsv.op("@@")(tsquery)
        return and_(matched, texts.c.kind == kind) if kind else matched

    @staticmethod
    def fts_expression(term: Term) -> BindParameter[str]:
        """The term as an FTS5 query: a phrase, or a prefix (a word ending in *)."""
        words, prefix = _words(term)
        return bindparam(None, '"' + words.replace('"', '""') + '"' + ("*" if prefix else ""),
                         type_=String)

    def root_prompt(self, term: Term) -> Select:
        texts = self.alias(FindTextRow)
        roots = (select(texts.c.digest.label("digest")).join(_a, _a.c.digest == texts.c.digest)
                 .where(self.text_match(term, "prompt", texts), _a.c.layer.in_(ROOT_LAYERS)))
        self.counter += 1
        down = roots.cte(f"root_{self.counter}", recursive=True)
        step = _d.alias(f"root_step_{self.counter}")
        down = down.union(select(step.c.output_digest).where(step.c.input_digest == down.c.digest))
        return select(down.c.digest)

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

    def branch(self, name: str) -> Select:
        """Made by a job on the branch, or ever its head."""
        assets, jobs, moves = table(AssetRow), table(JobRow), table(BranchMoveRow)
        made_on = (select(assets.c.digest).join(jobs, jobs.c.job_id == assets.c.job_id)
                   .where(jobs.c.branch == name))
        heads = select(moves.c.head).where(moves.c.branch == name, moves.c.head.is_not(None))
        self.counter += 1
        both = union(made_on, heads).subquery(f"branch_{self.counter}")
        return select(both.c.digest)

    def flag(self, value: str) -> Select:
        if value == "final":
            return select(table(FinalRow).c.digest)
        selections = table(SelectionRow)
        return select(selections.c.digest).where(selections.c.decision == value)

    def parameter(self, term: Term, params: Alias, correlated: bool) -> ColumnElement[bool]:
        """That a find_params row (of `params`) holds the term: a model by name, or a
        recipe entry by name (numbers compared, text matched exactly or by prefix).
        `correlated`: the row is looked up per candidate asset in the (digest, name, num,
        txt) index; text is wrapped so that no planner takes another (digest, name) index,
        which would then read the row too."""
        num: Any = params.c.num
        txt: Any = params.c.txt + "" if correlated else params.c.txt
        if term.field == "model":
            return _model(term.value.lower(), params, txt)
        named = params.c.name == term.field
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
                matched = and_(matched, or_(params.c.txt.is_(None), txt == str(int(term.value))))
        else:
            matched = _compare(num, term, float)
        return and_(named, matched)


# Terms whose assets come from another projection's table (a small set: decisions, lineage,
# branches) rather than from the find indexes.
_SET_FIELDS = frozenset(("root-prompt", "from", "into", "branch", "review", "is", "rating"))


def _model(value: str, params: Alias, txt: Any) -> ColumnElement[bool]:
    """A model by name (Strata's registered name, another tool's checkpoint name), or by a
    prefix of its weights' digest or the hash another tool recorded."""
    prefix = value.endswith("*")
    name = value.rstrip("*")
    by_name = txt.startswith(name) if prefix else txt == name
    matches = [and_(params.c.name.in_(("model", "model.name")), by_name)]
    hexed = name.removeprefix("sha256:")
    if len(hexed) >= 4 and re.fullmatch(r"[0-9a-f]+", hexed):
        matches += [and_(params.c.name == "model.digest", txt.startswith(f"sha256:{hexed}")),
                    and_(params.c.name == "model.hash", txt.startswith(hexed))]
    return or_(*matches)


def _reads_asset_row(check: ColumnElement[bool]) -> bool:
    """Whether a check needs a find_assets column besides the digest."""
    return any(isinstance(e, Column) and e.table is _a and e.name != "digest"
               for e in iterate(check))


def _exists(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """EXISTS (SELECT 1 …): with `SELECT *` SQLite reads the table row even when an index
    holds every column the conditions need."""
    return select(literal_column("1")).where(*conditions).exists()


def _cost(node: Node) -> int:
    """The order terms are checked in for one asset: its own columns (no lookup), then
    prompt words (one index entry, against a list read once; a word or phrase usually
    holds for few assets), a parameter (one or two index entries; common values are
    common), a small set, anything nested."""
    if not isinstance(node, Term):
        return 4
    if node.field in ("layer", "op", "actor", "media", "made"):
        return 0
    if node.field in (None, "prompt", "negative"):
        return 1
    if node.field in _SET_FIELDS or node.field == "like":
        return 3
    return 2


def _words(term: Term) -> tuple[str, bool]:
    """A text term's words, and whether the last is a prefix (a word ending in *)."""
    prefix = not term.quoted and term.value.endswith("*") and len(term.value) > 1
    return (term.value.rstrip("*") if prefix else term.value), prefix


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


def _made(term: Term, made: Any) -> ColumnElement[bool]:
    """`made` compares whole days (UTC) with the ISO times events are recorded at."""
    def day_after(text_date: str) -> str:
        return (date.fromisoformat(text_date) + timedelta(days=1)).isoformat()

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
