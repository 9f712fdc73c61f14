"""Compositing commands: `strata composite`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strata.api.cli.app import app, open_strata
from strata.api.cli.commands.jobs import Wait, submit
from strata.core.decisions import branches
from strata.core.errors import InvalidInput
from strata.core.imaging import BLEND_MODES


@app.command()
def composite(
    layer: Annotated[list[str], typer.Option(
        "--layer", help="ASSET[:x,y,scale,opacity,blend] or ASSET:name=value,… (names: x, y, "
        f"scale, opacity, blend, mask=ASSET); bottom first; blends: {', '.join(BLEND_MODES)}",
    )] = [],  # noqa: B006
    canvas: Annotated[str | None, typer.Option(
        help="WIDTHxHEIGHT (default: the background asset's size, else the bottom layer's)",
    )] = None,
    background: Annotated[str | None, typer.Option(
        help="a colour (white, #rrggbb, #rrggbbaa, transparent: the default) or an image "
        "asset")] = None,
    spec: Annotated[Path | None, typer.Option(
        help='a JSON file: {"layers": [{"asset": …, "x": …, "blend": …}], "canvas": "WxH", '
        '"background": …}')] = None,
    branch: Annotated[str | None, typer.Option(help="default: the current branch")] = None,
    wait: Wait = False,
) -> None:
    """Place, scale and blend image layers onto one canvas (W3C blend modes)."""
    from strata.core.layers import compositing

    strata = open_strata()
    branch = branches.resolve(strata, branch)
    if spec is not None:
        if layer or canvas is not None or background is not None:
            raise InvalidInput("--spec holds the layers, canvas and background: give either "
                               "--spec or --layer/--canvas/--background")
        request = compositing.build_request_from_spec(strata, spec, branch=branch)
    else:
        request = compositing.build_request(strata, layer, canvas=canvas,
                                            background=background, branch=branch)
    submit(strata, request, wait)
