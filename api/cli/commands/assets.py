"""Asset commands: add, log, show, lineage."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.tree import Tree

from strata.api.cli.app import (
    AsOf,
    Json,
    app,
    console,
    err_console,
    open_strata,
    print_json,
    print_rows,
    short,
)
from strata.core.errors import InvalidInput, NotFound
from strata.core.ledger.events import RecordedEvent, UnknownPayload, registry
from strata.core.projections.lineage import Direction, Edge


@app.command()
def add(
    files: Annotated[list[Path], typer.Argument(help="files to import", exists=False)],
    parent: Annotated[
        list[str], typer.Option("--from", help="an asset the files were made from")
    ] = [],  # noqa: B006 - Typer reads the default, never mutates it
    role: Annotated[str, typer.Option(help="the role of the --from assets")] = "source",
    operation: Annotated[str, typer.Option(help="what was done to the --from assets")] = (
        "external"
    ),
) -> None:
    """Import files (all or none): asset.imported, or asset.derived with --from."""
    events = open_strata().add_files(files, [(ref, role) for ref in parent], operation)
    rows = []
    for path, event in zip(files, events, strict=True):
        asset = event.data.get("asset") or event.data["output"]["asset"]
        rows.append((short(asset["digest"]), asset["media_type"], path))
    print_rows(("asset", "type", "file"), rows)


@app.command()
def log(
    stream: Annotated[str | None, typer.Option(help="only this stream")] = None,
    type_: Annotated[
        list[str], typer.Option("--type", help="only these event types")
    ] = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="how many of the newest events (1 or more)")] = 20,
    as_of: AsOf = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON envelope per line")] = False,
) -> None:
    """The newest events of the log, oldest first."""
    if limit < 1:
        raise InvalidInput(f"--limit must be 1 or more, not {limit}")
    strata = open_strata()
    # A type this version does not know may still be in the log (written by a plug-in not
    # loaded here): only a type that is in neither is a typo worth refusing.
    unknown = [t for t in type_ if not registry.known(t)
               and not strata.ledger.read_last(1, types=[t])]
    if unknown:
        raise InvalidInput(f"no event type {', '.join(map(repr, unknown))} is known to this "
                           "version or found in the log; `strata log --json` shows the types "
                           "in the log")
    if as_of is not None:
        strata.require_position(as_of)
    events = strata.ledger.read_last(
        limit, types=type_ or None, streams=[stream] if stream else None, to_position=as_of
    )
    if as_json:
        for event in events:
            print_json({**event.envelope(), "prev_hash": event.prev_hash, "hash": event.hash})
        return
    if not events and console.is_terminal:
        err_console.print("no events match")
    print_rows(("pos", "type", "stream", "v", "event", "when", "summary"), [
        (event.position, event.type, event.stream, event.version, event.event_id[:10],
         event.recorded_at[:19], summarize(event)) for event in events])


def summarize(event: RecordedEvent) -> str:
    payload = event.payload
    if isinstance(payload, UnknownPayload):
        return "(unknown to this version)"
    return payload.summary()


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="an asset hash prefix or an event id prefix")],
    as_of: AsOf = None,
    as_json: Json = False,
) -> None:
    """Everything known about an asset (what made it, what was made from it) or an event."""
    from strata.core.lookup import EventFound, lookup

    found = lookup(open_strata(), ref, as_of)
    if isinstance(found, EventFound):
        event = found.event
        if as_json:
            print_json({**event.envelope(), "prev_hash": event.prev_hash, "hash": event.hash})
        else:
            show_event(event)
        return
    details = found.details
    if as_json:
        print_json({**dataclasses.asdict(details), "recipe": found.recipe,
                    "recorded_by": found.created.meta if found.created else None})
        return
    asset = details.asset
    say = console.print
    say(f"[bold]asset[/] {asset['digest']}")
    size = f"{asset['width']}x{asset['height']}" if asset["width"] else "-"
    say(f"  {asset['media_type']}, {asset['size']:,} bytes, {size}")
    if asset["phash"]:
        say(f"  phash {asset['phash']}  dhash {asset['dhash']}")
    if asset["duration"] is not None:
        say(f"  {media_facts(asset)}")
    say(f"  made by: {asset['layer']} (event {asset['created_position']}"
        f"{', job ' + asset['job_id'] if asset['job_id'] else ''})")
    if found.created is not None:
        meta = found.created.meta
        say(f"  recorded {found.created.recorded_at} by {meta.get('actor')}@{meta.get('host')}")
    recipe = found.recipe
    shown = {k: v for k, v in recipe.items()
             if k not in ("layer", "inputs", "actor", "host", "made_at", "job_id",
                          "reconstructed", "raw_metadata", "raw_truncated")}
    if shown:
        # A recipe read from an imported file is what the file says, not what Strata saw.
        say(f"  recipe, {recipe['reconstructed']}:" if "reconstructed" in recipe
            else "  recipe:")
        for key, value in shown.items():
            if isinstance(value, dict) and key in ("scheduler", "model", "timings"):
                value = value.get("class_name") or value.get("digest") or value
            say(f"    {key}: {escape(str(value))}")
    if recipe.get("raw_metadata"):  # verbatim in --json; here only what there is
        cut = recipe.get("raw_truncated", {})
        say("  raw metadata: " + ", ".join(
            f"{escape(name)} ({len(text):,} characters"
            + (f", kept truncated from {cut[name]:,} bytes)" if name in cut else ")")
            for name, text in recipe["raw_metadata"].items()))
    for edge in details.parents:
        say(f"  ← {edge.role}: {short(edge.input_digest)} ({edge.layer} {edge.operation})")
    for edge in details.children:
        say(f"  → {short(edge.output_digest)} ({edge.layer} {edge.operation})")
    for label, state in (("selection", details.selection), ("review", details.review),
                         ("final", details.final)):
        if state:
            facts = {k: v for k, v in state.items() if k != "digest" and v is not None}
            say(f"  {label}: {escape(str(facts))}")
    if details.branches:
        say(f"  head of: {', '.join(details.branches)}")


def show_event(event: RecordedEvent) -> None:
    console.print(f"[bold]event[/] {event.event_id}  {event.type} (schema {event.schema})")
    console.print(f"  position {event.position}, stream {event.stream} v{event.version}")
    console.print(f"  recorded {event.recorded_at}; hash {event.hash[:16]}…")
    console.print_json(data={"data": event.data, "meta": event.meta})


@app.command()
def lineage(
    ref: Annotated[str, typer.Argument(help="an asset hash prefix")],
    up: Annotated[bool, typer.Option("--up/--down", help="ancestors (default) or descendants")]
    = True,
    depth: Annotated[int, typer.Option(help="how many steps to follow", min=1)] = 50,
    roots: Annotated[bool, typer.Option("--roots", help="only the assets it all began from")]
    = False,
    path_from: Annotated[str | None, typer.Option(
        "--from", help="the shortest chain from this ancestor down to the asset")] = None,
    as_of: AsOf = None,
    as_json: Json = False,
) -> None:
    """The lineage of an asset drawn as a tree: what made it, or what was made from it."""
    from strata.core.projections import lineage as queries

    strata = open_strata()
    direction: Direction = "up" if up else "down"
    with strata.view(as_of) as conn:
        digest = strata.resolve_asset(ref, conn)
        if roots:
            found = queries.roots(conn, digest)
            if as_json:
                print_json({"asset": digest, "roots": found})
            else:
                print_rows(("root",), [(root,) for root in found])
            return
        if path_from is not None:
            ancestor = strata.resolve_asset(path_from, conn)
            chain = queries.path(conn, ancestor, digest)
            if chain is None:
                raise NotFound(f"{short(digest)} does not descend from {short(ancestor)}")
            if as_json:
                print_json({"from": ancestor, "to": digest, "path": chain})
            else:
                console.print(" → ".join(short(d) for d in chain))
            return
        edges = queries.walk(conn, digest, direction, depth)
    if as_json:
        print_json({"asset": digest, "direction": direction,
                    "edges": [dataclasses.asdict(edge) for edge in edges]})
    elif not console.is_terminal:
        print_rows((), [(e.input_digest, e.output_digest, e.role, e.layer, e.operation, e.depth)
                        for e in edges])
    else:
        console.print(lineage_tree(digest, edges, direction))


def media_facts(asset: dict[str, Any]) -> str:
    """The probed facts of an audio or video asset, in one line."""
    facts = [f"{asset['duration']:.3f} s"]
    if asset["fps"]:
        facts.append(f"{asset['fps']:g} fps, {asset['frames']} frames, {asset['video_codec']}")
    if asset["sample_rate"]:
        facts.append(f"{asset['sample_rate']} Hz, {asset['channels']} channel(s), "
                     f"{asset['audio_codec']}")
    return " · ".join(facts)


def lineage_tree(digest: str, edges: list[Edge], direction: Direction) -> Tree:
    below: dict[str, list[Any]] = {}
    for edge in edges:
        key = edge.output_digest if direction == "up" else edge.input_digest
        below.setdefault(key, []).append(edge)
    root = Tree(f"[bold]{short(digest)}[/]")
    expanded = {digest}

    def grow(node: Tree, at: str) -> None:
        for edge in below.get(at, []):
            nxt = edge.input_digest if direction == "up" else edge.output_digest
            label = f"{short(nxt)} [dim]{edge.role} · {edge.layer} {edge.operation}[/]"
            if nxt in expanded:  # a diamond in the DAG: drawn once, referred to after
                node.add(label + (" [dim](shown above)[/]" if below.get(nxt) else ""))
                continue
            expanded.add(nxt)
            grow(node.add(label), nxt)

    grow(root, digest)
    return root
