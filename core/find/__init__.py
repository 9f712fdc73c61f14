"""Find by recipe: search the whole history by prompt words, model, seed, parameters,
decisions, lineage and visual similarity (docs/find.md).

`core.find.search.search` is the one function every face calls. The indexes it reads are
projections (core.find.projection), rebuilt from the log like every other.

Nothing is imported here: every process that opens a store imports the index tables
(core.find.schema) for its projections, and a read command should not pay for the query
parser and the search behind them.
"""
