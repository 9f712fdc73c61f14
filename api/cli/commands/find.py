"""`strata find`: search the whole history by recipe, decisions, lineage and similarity."""

from __future__ import annotations

from typing import Annotated

import typer

from strata.api.cli.app import AsOf, Json, app, err_console, open_strata, print_json, print_rows


@app.command()
def find(
    query: Annotated[str, typer.Argument(
        help='what to find, e.g. \'prompt:"golden hour" fox model:sdxl seed:42 steps>=30 '
             'final\' (the language: docs/find.md)')] = "",
    similar: Annotated[str | None, typer.Option(
        "--similar", help="near-duplicates of this asset (a hash prefix), nearest first")]
    = None,
    distance: Annotated[int, typer.Option(
        help="how many of the 64 perceptual-hash bits may differ (0-16)")] = 8,
    limit: Annotated[int, typer.Option(help="show at most this many (1-1000)")] = 50,
    offset: Annotated[int, typer.Option(help="skip this many matches first")] = 0,
    as_of: AsOf = None,
    as_json: Json = False,
) -> None:
    """Find assets by prompt words, model, seed, any parameter, layer, operation, branch,
    decisions, who and when, lineage (from:, into:, root-prompt:) and visual similarity
    (--similar or like:). Newest first; nearest first when similarity is asked for."""
    from strata.core.find.search import search

    found = search(open_strata(), query, similar=similar, distance=distance, limit=limit,
                   offset=offset, as_of=as_of)
    if as_json:
        print_json(found.to_json())
        return
    with_distance = found.similar_to is not None
    print_rows(
        ("asset", "layer", "operation", "media", "made", "actor",
         *(("distance",) if with_distance else ())),
        [(r.digest.removeprefix("sha256:")[:12], r.layer, r.operation, r.media_type,
          r.created_at[:19].replace("T", " "), r.actor or "",
          *((r.distance,) if with_distance else ())) for r in found.rows])
    if found.total == 0:
        err_console.print("no matches")
    elif len(found.rows) < found.total or not found.total_exact:
        err_console.print(f"matches {found.offset + 1} to {found.offset + len(found.rows)} "
                          f"of {found.total_text} (--offset and --limit show others)")
