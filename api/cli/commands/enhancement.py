"""Enhancement commands: `strata enhance`.

The operations run in the order they are typed. Click processes options in the order the
user gave them, so each operation's callback appends it to one list as it is processed;
each operation may be given once per command (run `enhance` again on the output to repeat
one).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from strata.api.cli.app import app, open_strata
from strata.api.cli.commands.jobs import Wait, submit
from strata.core.decisions import branches
from strata.core.errors import InvalidInput

ORDER_KEY = "strata.enhance.operations"


def _operation(name: str) -> Any:
    """The callback that records operation `name` where it was typed."""

    def record(ctx: typer.Context, value: Any) -> Any:
        given = value if isinstance(value, list) else [True] * value  # a list, or a count
        if len(given) > 1:
            raise typer.BadParameter(f"--{name} is given {len(given)} times; each operation "
                                     "runs once per command (enhance the output again to "
                                     "repeat one)")
        if given:
            ctx.meta.setdefault(ORDER_KEY, []).append(_settings(name, given[0]))
        return value

    return record


# The setting each operation's one value sets; auto-contrast and white-balance have none.
SETTING = {"upscale": "factor", "saturation": "factor", "gamma": "gamma", "denoise": "strength"}


def _settings(name: str, value: Any) -> dict[str, Any]:
    if name == "sharpen":
        parts = value.split(",")
        if len(parts) not in (2, 3):
            raise typer.BadParameter(f"--sharpen {value!r}: expected RADIUS,AMOUNT[,THRESHOLD] "
                                     "(pixels, percent, levels), e.g. 2,150")
        return {"op": name, **dict(zip(("radius", "amount", "threshold"), parts, strict=False))}
    return {"op": name, SETTING[name]: value} if name in SETTING else {"op": name}


@app.command()
def enhance(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(help="the image to enhance")],
    upscale: Annotated[list[int], typer.Option(
        help="scale by 2 or 4", callback=_operation("upscale"))] = [],  # noqa: B006
    method: Annotated[str, typer.Option(
        help="how --upscale scales: lanczos, or model (a registered diffusers upscaler)")]
    = "lanczos",
    model: Annotated[str | None, typer.Option(
        help="the registered upscaler for --method model (default: the only one)")] = None,
    auto_contrast: Annotated[int, typer.Option(
        "--auto-contrast", count=True, help="stretch each channel to the full range",
        callback=_operation("auto-contrast"))] = 0,
    white_balance: Annotated[int, typer.Option(
        "--white-balance", count=True, help="grey-world white balance",
        callback=_operation("white-balance"))] = 0,
    saturation: Annotated[list[float], typer.Option(
        help="0 grey, 1 unchanged, 2 twice as vivid",
        callback=_operation("saturation"))] = [],  # noqa: B006
    gamma: Annotated[list[float], typer.Option(
        help="above 1 brightens the mid-tones, below 1 darkens them",
        callback=_operation("gamma"))] = [],  # noqa: B006
    sharpen: Annotated[list[str], typer.Option(
        help="unsharp mask RADIUS,AMOUNT[,THRESHOLD]: pixels, percent, levels",
        callback=_operation("sharpen"))] = [],  # noqa: B006
    denoise: Annotated[list[float], typer.Option(
        help="3x3 median filter mixed in at this strength (0 to 1)",
        callback=_operation("denoise"))] = [],  # noqa: B006
    branch: Annotated[str | None, typer.Option(help="default: the current branch")] = None,
    wait: Wait = False,
) -> None:
    """Upscale, colour and sharpen an image: the operations run in the order typed."""
    from strata.core.layers import enhancement

    operations: list[dict[str, Any]] = ctx.meta.get(ORDER_KEY, [])
    if not operations:
        raise InvalidInput("nothing to do: give at least one operation (--upscale, "
                           "--auto-contrast, --white-balance, --saturation, --gamma, "
                           "--sharpen, --denoise)")
    if not upscale and method != "lanczos":
        raise InvalidInput("--method says how --upscale scales; there is no --upscale")
    operations = [{**op, "method": method} if op["op"] == "upscale" else op
                  for op in operations]
    strata = open_strata()
    request = enhancement.build_request(strata, asset, operations, upscaler=model,
                                        branch=branches.resolve(strata, branch))
    submit(strata, request, wait)
