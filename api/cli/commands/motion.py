"""Motion commands: `strata motion ASSET --kenburns …` and `strata motion sequence A B C`."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from strata.api.cli.app import app, open_strata
from strata.api.cli.commands.jobs import Wait, submit
from strata.core.decisions import branches
from strata.core.errors import InvalidInput

KENBURNS = re.compile(r"(?:zoom=(?P<zoom>[^,]+))?,?(?:pan=(?P<x>[^,]+),(?P<y>[^,]+))?")


@app.command()
def motion(
    refs: Annotated[list[str], typer.Argument(
        help="ASSET for a Ken Burns move, or `sequence` followed by the images")],
    kenburns: Annotated[str, typer.Option(
        help="zoom=Z,pan=X,Y: zoom from 1 to Z, the view's centre moving by X, Y times the "
             "image's width and height")] = "zoom=1.2,pan=0,0",
    duration: Annotated[float, typer.Option(help="seconds of the Ken Burns move")] = 4.0,
    fps: Annotated[int, typer.Option(help="frames per second")] = 24,
    hold: Annotated[float, typer.Option(help="sequence: seconds each image is held")] = 1.0,
    crossfade: Annotated[float, typer.Option(
        help="sequence: seconds of dissolve between neighbours")] = 0.0,
    fmt: Annotated[str, typer.Option("--format", help="mp4 (H.264), gif or webp")] = "mp4",
    branch: Annotated[str | None, typer.Option(help="default: the current branch")] = None,
    wait: Wait = False,
) -> None:
    """Make a clip from still images: a Ken Burns move over one, or a sequence."""
    from strata.core.layers.motion import build_request

    strata = open_strata()
    branch = branches.resolve(strata, branch)
    if refs[0] == "sequence":
        if len(refs) < 2:
            raise InvalidInput("motion sequence needs at least one image")
        request = build_request(strata, refs[1:], operation="sequence", fps=fps, hold=hold,
                                crossfade=crossfade, fmt=fmt, branch=branch)
    else:
        if len(refs) != 1:
            raise InvalidInput("a Ken Burns move is over one image; for several, use "
                               "`strata motion sequence A B C`")
        zoom, pan = parse_kenburns(kenburns)
        request = build_request(strata, refs, operation="kenburns", duration=duration,
                                fps=fps, zoom=zoom, pan=pan, fmt=fmt, branch=branch)
    submit(strata, request, wait)


def parse_kenburns(spec: str) -> tuple[float, tuple[float, float]]:
    """zoom=1.2,pan=0.1,0 → (1.2, (0.1, 0.0)); either part may be left out."""
    match = KENBURNS.fullmatch(spec.replace(" ", ""))
    try:
        if match is None or not spec.strip():
            raise ValueError(spec)
        zoom = float(match["zoom"] or 1.0)
        pan = (float(match["x"] or 0.0), float(match["y"] or 0.0))
    except ValueError:
        raise InvalidInput(f"--kenburns {spec!r}: expected zoom=Z,pan=X,Y, e.g. "
                           "zoom=1.2,pan=0.1,0") from None
    return zoom, pan
