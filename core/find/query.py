"""The find query language: parsed into a small tree, checked before anything is read.

    query    := any ( [AND] any )*           terms side by side must all hold
    any      := unary ( OR unary )*          OR binds tighter than the implicit AND
    unary    := "-" unary | "(" query ")" | term
    term     := word | "phrase" | field ":" value | field op value | final
    op       := >= | <= | > | < | =          value := word | "phrase" | low..high

See docs/find.md for the fields. A query that does not parse raises InvalidInput whose
message shows the query with a caret under the offending term.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from strata.core.errors import InvalidInput

TEXT_FIELDS = ("prompt", "negative", "root-prompt")
NAME_FIELDS = ("model", "layer", "op", "branch", "actor", "media", "review", "is")
ASSET_FIELDS = ("from", "into", "like")
ORDERED_FIELDS = ("rating", "made")  # compared with ranges and >=, <=, >, <
# Every other field names a recipe parameter.
SPECIAL_FIELDS = frozenset((None, *TEXT_FIELDS, *NAME_FIELDS, *ASSET_FIELDS, *ORDERED_FIELDS))
REVIEWS = {"approved": "approve", "approve": "approve", "rejected": "reject",
           "reject": "reject", "changes": "changes"}
FLAGS = ("final", "picked", "rejected")
OPERATORS = (">=", "<=", ">", "<", "=", ":")

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_OPERATOR = re.compile(r">=|<=|>|<|=|:")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_WORD = re.compile(r"[^\s()\"]+")


@dataclass(frozen=True)
class Term:
    field: str | None  # None: a bare word or phrase (prompts and negative prompts)
    op: str  # one of OPERATORS, or ".." for a range
    value: str  # the low end for a range
    high: str | None  # the high end of a range
    quoted: bool  # a phrase, matched as one
    column: int  # where the term starts in the query (0-based)
    width: int


@dataclass(frozen=True)
class Not:
    node: Node


@dataclass(frozen=True)
class All:
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    nodes: tuple[Node, ...]


Node = Term | Not | All | Any_


def parse(query: str) -> Node | None:
    """The tree of a query; None for an empty query (everything)."""
    parser = _Parser(query)
    node = parser.query(top=True)
    return node


def terms(node: Node | None) -> list[Term]:
    """Every term of a tree, in query order."""
    if node is None:
        return []
    if isinstance(node, Term):
        return [node]
    if isinstance(node, Not):
        return terms(node.node)
    return [t for child in node.nodes for t in terms(child)]


def refuse(query: str, column: int, width: int, message: str) -> InvalidInput:
    """An error naming the offending part of the query, with a caret under it."""
    caret = " " * column + "^" * max(1, width)
    return InvalidInput(f"bad query at column {column + 1}: {message}\n  {query}\n  {caret}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.depth = 0

    # --- structure -------------------------------------------------------------------------

    def query(self, top: bool = False) -> Node | None:
        nodes: list[Node] = []
        while True:
            self._skip()
            if self.at >= len(self.text):
                break
            if self.text[self.at] == ")":
                if top:
                    raise self._error(1, "')' without a matching '('")
                break
            if self._keyword("AND"):
                if not nodes:
                    raise self._error(3, "AND needs a term before it")
                keyword_at = self.at
                self.at += 3
                self._skip()
                if self.at >= len(self.text) or self.text[self.at] == ")":
                    raise refuse(self.text, keyword_at, 3, "AND needs a term after it")
                continue
            nodes.append(self.any_())
        if not nodes:
            return None
        return nodes[0] if len(nodes) == 1 else All(tuple(nodes))

    def any_(self) -> Node:
        if self._keyword("OR"):
            raise self._error(2, "OR needs a term before it")
        nodes = [self.unary()]
        while True:
            save = self.at
            self._skip()
            if not self._keyword("OR"):
                self.at = save
                break
            keyword_at = self.at
            self.at += 2
            self._skip()
            if self.at >= len(self.text) or self.text[self.at] == ")" or self._keyword("OR"):
                raise refuse(self.text, keyword_at, 2, "OR needs a term after it")
            nodes.append(self.unary())
        return nodes[0] if len(nodes) == 1 else Any_(tuple(nodes))

    def unary(self) -> Node:
        start = self.at
        char = self.text[self.at]
        if char == "-":
            self.at += 1
            if self.at >= len(self.text) or self.text[self.at].isspace():
                raise refuse(self.text, start, 1, "'-' must be followed by the term it negates")
            return Not(self.unary())
        if char == "(":
            self.at += 1
            self.depth += 1
            inner = self.query()
            if self.at >= len(self.text) or self.text[self.at] != ")":
                raise refuse(self.text, start, 1, "'(' is never closed")
            if inner is None:
                raise refuse(self.text, start, self.at - start + 1, "empty parentheses")
            self.at += 1
            self.depth -= 1
            return inner
        return self.term()

    # --- terms -----------------------------------------------------------------------------

    def term(self) -> Term:
        start = self.at
        if self.text[start] == '"':
            phrase = self._quoted()
            return _checked(self.text, Term(None, ":", phrase, None, True, start,
                                            self.at - start))
        field = _FIELD.match(self.text, start)
        op = _OPERATOR.match(self.text, field.end()) if field else None
        if field is None or op is None:
            word = _WORD.match(self.text, start)
            assert word is not None  # not a quote, a space or a parenthesis: see unary
            self.at = word.end()
            value = word.group()
            if value in FLAGS:
                return Term("is", ":", value, None, False, start, len(value))
            return _checked(self.text, Term(None, ":", value, None, False, start, len(value)))
        name, operator = field.group().lower(), op.group()
        self.at = op.end()
        if self.at < len(self.text) and self.text[self.at] == '"':
            value, quoted = self._quoted(), True
        else:
            word = _WORD.match(self.text, self.at)
            if word is None:
                raise refuse(self.text, start, self.at - start, f"{name}{operator} needs a value")
            self.at, value, quoted = word.end(), word.group(), False
        high = None
        if operator == ":" and not quoted and ".." in value:
            value, high = value.split("..", 1)
            operator = ".."
            if not value and not high:
                raise refuse(self.text, start, self.at - start, "a range needs at least one end")
        return _checked(self.text, Term(name, operator, value, high, quoted, start,
                                        self.at - start))

    def _quoted(self) -> str:
        start = self.at
        end = self.text.find('"', start + 1)
        if end < 0:
            raise refuse(self.text, start, len(self.text) - start, "unterminated quote")
        self.at = end + 1
        phrase = self.text[start + 1:end]
        if not phrase.strip():
            raise refuse(self.text, start, end - start + 1, "empty phrase")
        return phrase

    # --- helpers ---------------------------------------------------------------------------

    def _skip(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def _keyword(self, word: str) -> bool:
        end = self.at + len(word)
        return (self.text.startswith(word, self.at)
                and (end == len(self.text) or self.text[end].isspace() or self.text[end] in "()"))

    def _error(self, width: int, message: str) -> InvalidInput:
        return refuse(self.text, self.at, width, message)


def _checked(query: str, term: Term) -> Term:
    """Refuse a term whose value cannot mean anything for its field."""
    def bad(message: str) -> InvalidInput:
        return refuse(query, term.column, term.width, message)

    name, op = term.field, term.op
    if name is None or name in TEXT_FIELDS:
        if op != ":":
            raise bad(f"{name or 'a word'} takes ':' and a word or \"phrase\", not {op}")
        if not term.quoted and not re.search(r"\w", term.value):
            raise bad(f"{term.value!r} has no letters or digits to search for")
        return term
    if name in NAME_FIELDS or name in ASSET_FIELDS:
        if op != ":":
            raise bad(f"{name} takes ':' and a value, not {op}")
        if name == "review" and term.value.lower() not in REVIEWS:
            raise bad(f"review takes one of {', '.join(sorted(REVIEWS))}, not {term.value!r}")
        if name == "is" and term.value.lower() not in FLAGS:
            raise bad(f"is takes one of {', '.join(FLAGS)}, not {term.value!r}")
        return term
    ends = [v for v in (term.value, term.high) if v]
    if name == "made":
        for end in ends:
            if not _is_date(end):
                raise bad(f"made takes dates as YYYY-MM-DD, not {end!r}")
        return term
    if name == "rating":
        for end in ends:
            if not end.isdigit() or not 1 <= int(end) <= 5:
                raise bad(f"rating takes a whole number from 1 to 5, not {end!r}")
        return term
    # A parameter by its recipe name (seed, steps, cfg, video.frames…): numbers compare,
    # text matches exactly (or by prefix with a trailing *).
    if op not in (":", "=") or term.high is not None:
        for end in ends:
            if not _NUMBER.match(end):
                raise bad(f"{name}{'' if op == '..' else op} compares numbers; "
                          f"{end!r} is not one")
    return term


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def is_number(text: str) -> bool:
    return bool(_NUMBER.match(text))
