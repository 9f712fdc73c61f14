"""Asset commands: add, log, show, lineage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from strata.api.cli.app import AsOf, app, console, open_strata, short
from strata.core.errors import InvalidInput, NotFound
from strata.core.ledger.events import RecordedEvent, UnknownPayload
from strata.core.projections.lineage import Direction, walk


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
    """Import files into the store (records asset.imported, or asset.derived with --from)."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InvalidInput(f"not a file: {', '.join(missing)}; nothing was imported")
    if role not in ("source", "mask", "layer", "audio", "reference", "parent"):
        raise InvalidInput(f"unknown role {role!r}")
    strata = open_strata()
    for path in files:
        event = strata.add_file(path, [(p, role) for p in parent], operation)  # type: ignore[misc]
        data = event.data.get("asset") or event.data["output"]["asset"]
        console.print(f"{short(data['digest'])}  {data['media_type']:<24} {path}")


@app.command()
def log(
    stream: Annotated[str | None, typer.Option(help="only this stream")] = None,
    type_: Annotated[
        list[str], typer.Option("--type", help="only these event types")
    ] = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="how many of the newest events")] = 20,
    as_of: AsOf = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON envelope per line")] = False,
) -> None:
    """The newest events of the log, oldest first."""
    strata = open_strata()
    events = strata.ledger.read_last(
        limit, types=type_ or None, streams=[stream] if stream else None, to_position=as_of
    )
    if as_json:
        for event in events:
            sys.stdout.write(json.dumps({**event.envelope(), "hash": event.hash}) + "\n")
        return
    table = Table(box=None, header_style="bold")
    for column in ("pos", "type", "stream", "v", "event", "when", "summary"):
        table.add_column(column, no_wrap=column in ("type", "when", "event"))
    for event in events:
        table.add_row(
            str(event.position), event.type, event.stream, str(event.version),
            event.event_id[:10], event.recorded_at[:19], summarize(event),
        )
    console.print(table)


def summarize(event: RecordedEvent) -> str:
    payload = event.payload
    if isinstance(payload, UnknownPayload):
        return "[dim](unknown to this version)[/]"
    return payload.summary()


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="an asset hash prefix or an event id prefix")],
    as_of: AsOf = None,
) -> None:
    """Everything known about an asset (what made it, what was made from it) or an event."""
    from strata.core.errors import AssetNotFound, EventNotFound
    from strata.core.projections import views

    strata = open_strata()
    with strata.view(as_of) as conn:
        try:
            digest = strata.resolve_asset(ref, conn)
        except (AssetNotFound, InvalidInput):
            digest = None
        if digest is None:
            try:
                event = strata.resolve_event(ref)
            except EventNotFound:
                when = f" at position {as_of}" if as_of is not None else ""
                raise EventNotFound(f"no asset or event matches {ref!r}{when}") from None
            if as_of is not None and event.position > as_of:
                raise EventNotFound(f"event {event.event_id} was recorded after position {as_of}")
            show_event(event)
            return
        details = views.asset_details(conn, digest)
    created = strata.ledger.get(details.asset["created_event_id"])
    asset = details.asset
    console.print(f"[bold]asset[/] {asset['digest']}")
    size = f"{asset['width']}x{asset['height']}" if asset["width"] else "-"
    console.print(f"  {asset['media_type']}, {asset['size']:,} bytes, {size}")
    if asset["phash"]:
        console.print(f"  phash {asset['phash']}  dhash {asset['dhash']}")
    console.print(f"  made by: {asset['layer']} (event {asset['created_position']}"
                  f"{', job ' + asset['job_id'] if asset['job_id'] else ''})")
    if created is not None:
        console.print(f"  recorded {created.recorded_at} by {created.meta.get('actor')}"
                      f"@{created.meta.get('host')}")
    if asset["job_id"]:
        from strata.core.provenance.recipe import recipe

        console.print("  recipe:")
        for key, value in recipe(strata, digest).items():
            if key in ("scheduler", "versions", "model") and isinstance(value, dict):
                value = value.get("class_name") or value.get("digest") or value
            if key not in ("layer", "inputs", "actor", "host", "made_at", "job_id"):
                console.print(f"    {key}: {value}")
    for edge in details.parents:
        console.print(f"  ← {edge.role}: {short(edge.input_digest)} ({edge.operation})")
    for edge in details.children:
        console.print(f"  → {short(edge.output_digest)} ({edge.layer} {edge.operation})")
    for label, state in (("selection", details.selection), ("review", details.review),
                         ("final", details.final)):
        if state:
            shown = {k: v for k, v in state.items() if k != "digest" and v is not None}
            console.print(f"  {label}: {shown}")
    if details.branches:
        console.print(f"  head of: {', '.join(details.branches)}")


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
) -> None:
    """The lineage of an asset drawn as a tree: what made it, or what was made from it."""
    from strata.core.projections import lineage as queries

    strata = open_strata()
    direction: Direction = "up" if up else "down"
    with strata.view(as_of) as conn:
        digest = strata.resolve_asset(ref, conn)
        if roots:
            for root in queries.roots(conn, digest):
                console.print(root)
            return
        if path_from is not None:
            ancestor = strata.resolve_asset(path_from, conn)
            chain = queries.path(conn, ancestor, digest)
            if chain is None:
                raise NotFound(f"{short(digest)} does not descend from {short(ancestor)}")
            console.print(" → ".join(short(d) for d in chain))
            return
        edges = walk(conn, digest, direction, depth)
    console.print(lineage_tree(digest, edges, direction))


def lineage_tree(digest: str, edges: list[Any], direction: Direction) -> Tree:
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
