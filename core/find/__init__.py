"""Find by recipe: search the whole history by prompt words, model, seed, parameters,
decisions, lineage and visual similarity (docs/find.md).

`search` is the one function every face calls. The indexes it reads are projections
(core.find.projection), rebuilt from the log like every other.
"""

from strata.core.find.search import SearchResult, SearchRow, search

__all__ = ["SearchResult", "SearchRow", "search"]
