"""Editing commands: `strata edit inpaint|erase|outpaint|img2img|crop|rotate|flip|resize`.

Only option parsing lives here; `strata.core.layers.editing.build_request` checks
everything and stores mask files and boxes as mask assets.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from strata.api.cli.app import app, console, err_console, open_strata, short
from strata.api.cli.commands.jobs import SIZE, Wait, submit
from strata.core.decisions import branches
from strata.core.errors import InvalidInput

edit_app = typer.Typer(help="Edit one image: inpaint, erase, outpaint, img2img, crop, rotate, "
                            "flip, resize.", no_args_is_help=True)
app.add_typer(edit_app, name="edit")

Asset = Annotated[str, typer.Argument(help="the image to edit (a hash prefix)")]
Mask = Annotated[str | None, typer.Option(
    help="a mask file or asset: pixels of 128 or brighter are repainted")]
Box = Annotated[str | None, typer.Option(help="x,y,w,h: the region to repaint (a mask asset)")]
FitMask = Annotated[bool, typer.Option(
    "--fit-mask", help="resize a mask of another size to the image's (recorded)")]
Feather = Annotated[int, typer.Option(help="fade the repainted region in over PX pixels")]
Prompt = Annotated[str, typer.Option(help="what to paint")]
Negative = Annotated[str | None, typer.Option(help="negative prompt")]
Strength = Annotated[float | None, typer.Option(
    help="how much to change, 0 < S <= 1 (default 1 for inpainting, 0.75 for img2img)")]
Steps = Annotated[int, typer.Option(help="denoising steps")]
Cfg = Annotated[float | None, typer.Option(
    help="classifier-free guidance scale (default: the model's recommended one, else 7.5)")]
Seed = Annotated[int | None, typer.Option(help="seed (default: random)")]
Scheduler = Annotated[str, typer.Option(help="ddim, euler, euler_a, dpmpp_2m, …")]
Model = Annotated[str | None, typer.Option(
    help="a registered model name (default: shapes, or STRATA_DEFAULT_MODEL)")]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps")]
Branch = Annotated[str | None, typer.Option(help="default: the current branch")]
Pixels = Annotated[int, typer.Option(help="pixels to add on this side")]


def _edit(operation: str, asset: str, wait: bool, *, branch: str | None = None,
          box: str | None = None, **options: Any) -> None:
    from strata.core.layers.editing import build_request, parse_box

    strata = open_strata()
    request = build_request(strata, operation, asset, branch=branches.resolve(strata, branch),
                            box=None if box is None else parse_box(box), **options)
    if request.mask is not None:
        console.print(f"mask {short(request.mask)}")
    for warning in request.prompt_window_warnings():
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    submit(strata, request, wait)


def _diffusion(model: str | None, device: str | None, **options: Any) -> dict[str, Any]:
    """The options of a diffusion edit, unset ones left to the request's defaults."""
    return {"model": model, "device": device,
            **{k: v for k, v in options.items() if v is not None}}


@edit_app.command()
def inpaint(
    asset: Asset, prompt: Prompt, mask: Mask = None, box: Box = None, fit_mask: FitMask = False,
    feather: Feather = 0, negative: Negative = None, strength: Strength = None,
    steps: Steps = 20, cfg: Cfg = None, seed: Seed = None, scheduler: Scheduler = "ddim",
    model: Model = None, device: Device = None, branch: Branch = None, wait: Wait = False,
) -> None:
    """Repaint the masked region; every pixel outside the mask stays the source's."""
    _edit("inpaint", asset, wait, branch=branch, mask=mask, box=box, **_diffusion(
        model, device, fit_mask=fit_mask, feather=feather, prompt=prompt,
        negative_prompt=negative, strength=strength, steps=steps, cfg=cfg, seed=seed,
        scheduler=scheduler))


@edit_app.command()
def erase(
    asset: Asset, mask: Mask = None, box: Box = None, fit_mask: FitMask = False,
    feather: Feather = 0, prompt: Annotated[str, typer.Option(
        help="what to fill with (default: nothing in particular)")] = "",
    negative: Negative = None, steps: Steps = 20, cfg: Cfg = None, seed: Seed = None,
    scheduler: Scheduler = "ddim", model: Model = None, device: Device = None,
    branch: Branch = None, wait: Wait = False,
) -> None:
    """Remove the masked region: fill it by inpainting."""
    _edit("erase", asset, wait, branch=branch, mask=mask, box=box, **_diffusion(
        model, device, fit_mask=fit_mask, feather=feather, prompt=prompt,
        negative_prompt=negative, steps=steps, cfg=cfg, seed=seed, scheduler=scheduler))


@edit_app.command()
def outpaint(
    asset: Asset, prompt: Prompt, left: Pixels = 0, right: Pixels = 0, top: Pixels = 0,
    bottom: Pixels = 0, feather: Feather = 0, negative: Negative = None,
    strength: Strength = None, steps: Steps = 20, cfg: Cfg = None, seed: Seed = None,
    scheduler: Scheduler = "ddim", model: Model = None, device: Device = None,
    branch: Branch = None, wait: Wait = False,
) -> None:
    """Extend the canvas and paint the new border; the original pixels stay as they are."""
    _edit("outpaint", asset, wait, branch=branch, **_diffusion(
        model, device, left=left, right=right, top=top, bottom=bottom, feather=feather,
        prompt=prompt, negative_prompt=negative, strength=strength, steps=steps, cfg=cfg,
        seed=seed, scheduler=scheduler))


@edit_app.command()
def img2img(
    asset: Asset, prompt: Prompt, strength: Strength = None, negative: Negative = None,
    steps: Steps = 20, cfg: Cfg = None, seed: Seed = None, scheduler: Scheduler = "ddim",
    model: Model = None, device: Device = None, branch: Branch = None, wait: Wait = False,
) -> None:
    """Repaint the whole image, changing it by STRENGTH."""
    _edit("img2img", asset, wait, branch=branch, **_diffusion(
        model, device, prompt=prompt, negative_prompt=negative, strength=strength,
        steps=steps, cfg=cfg, seed=seed, scheduler=scheduler))


@edit_app.command()
def crop(
    asset: Asset,
    box: Annotated[str, typer.Option(help="x,y,w,h: the region to keep")],
    branch: Branch = None, wait: Wait = False,
) -> None:
    """Keep a rectangle of the image."""
    _edit("crop", asset, wait, branch=branch, box=box)


@edit_app.command()
def rotate(
    asset: Asset,
    angle: Annotated[float, typer.Option(help="degrees, counter-clockwise")],
    expand: Annotated[bool, typer.Option(help="grow the canvas to hold the whole image")]
    = True,
    branch: Branch = None, wait: Wait = False,
) -> None:
    """Rotate the image (bicubic)."""
    _edit("rotate", asset, wait, branch=branch, angle=angle, expand=expand)


@edit_app.command()
def flip(
    asset: Asset,
    vertical: Annotated[bool, typer.Option(
        "--vertical", help="top to bottom (default: left to right)")] = False,
    branch: Branch = None, wait: Wait = False,
) -> None:
    """Mirror the image."""
    _edit("flip", asset, wait, branch=branch,
          direction="vertical" if vertical else "horizontal")


@edit_app.command()
def resize(
    asset: Asset,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT")],
    resample: Annotated[str, typer.Option(help="lanczos, bicubic, bilinear, nearest")]
    = "lanczos",
    branch: Branch = None, wait: Wait = False,
) -> None:
    """Resize the image to WIDTHxHEIGHT."""
    match = SIZE.match(size)
    if match is None:
        raise InvalidInput(f"--size {size!r}: expected WIDTHxHEIGHT, e.g. 128x96")
    _edit("resize", asset, wait, branch=branch, width=int(match.group(1)),
          height=int(match.group(2)), resample=resample)
