"""Model commands: strata model add | tiny | train-shapes | list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strata.api.cli.app import Json, app, console, open_strata, print_json, print_rows
from strata.core.errors import InvalidInput
from strata.core.models.shapes import DEFAULT_MINUTES

model_app = typer.Typer(help="Register and list the models the executors load.",
                        no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("add")
def add_model(
    name: Annotated[str, typer.Argument(help="the name requests will use")],
    path: Annotated[
        Path, typer.Argument(help="a diffusers model folder or single-file checkpoint")
    ],
) -> None:
    """Register a local model; its identity is a digest of its weight files."""
    from strata.core.models import registry as models

    if not path.exists():
        raise InvalidInput(f"no model folder or file at {path}")
    with console.status(f"hashing the weights of {path}…"):
        event = models.register(open_strata(), name, path)
    console.print(f"model [bold]{name}[/] registered: {event.data['digest']}")


@model_app.command("tiny")
def tiny_model(
    name: Annotated[str | None, typer.Argument(
        help="the name to register it under (default: tiny, tiny-motion or tiny-audio)")]
    = None,
    seed: Annotated[int, typer.Option(help="seed of its random weights")] = 0,
    kind: Annotated[str, typer.Option(
        help="image (a Stable-Diffusion-shaped pipeline), video (a motion adapter for the "
             "tiny image model) or audio (an AudioLDM-shaped pipeline)")] = "image",
) -> None:
    """Write a bundled tiny model with seeded weights (nothing is downloaded)."""
    from strata.core.models import registry as models

    with console.status(f"writing the tiny {kind} model…"):
        event = models.write_tiny(open_strata(), name, seed, kind)
    console.print(f"model [bold]{event.data['name']}[/] at {event.data['path']}: "
                  f"{event.data['digest']}")


@model_app.command("train-shapes")
def train_shapes(
    out: Annotated[Path, typer.Option(help="a new or empty folder for the trained model")]
    = Path("shapes-model"),
    minutes: Annotated[float, typer.Option(
        help="the training budget, as minutes on two idle CPU cores (a fixed number of "
             "steps: the same minutes and seed give the same weights)")] = DEFAULT_MINUTES,
    seed: Annotated[int, typer.Option(help="seed of the data and the weights")] = 0,
    threads: Annotated[int, typer.Option(
        min=1, help="CPU threads (the weights depend on it: keep it to reproduce them)")] = 2,
) -> None:
    """Train the shapes model on this CPU (nothing is downloaded) and write a diffusers
    folder; register it with `strata model add NAME FOLDER`."""
    from strata.core.models.shapes.train import train_shapes as train

    report = train(out, minutes=minutes, seed=seed, threads=threads, say=console.print)
    console.print(f"shapes model written to [bold]{report.folder}[/] in "
                  f"{report.seconds / 60:.1f} min; register it with "
                  f"`strata model add NAME {report.folder}`")


@model_app.command("list")
def list_models(as_json: Json = False) -> None:
    """The registered models, where their files are and what their weights hash to."""
    from strata.core.models import registry as models

    strata = open_strata()
    with strata.view() as conn:
        rows = models.all_models(conn)
    if as_json:
        print_json([row.model_dump() for row in rows])
        return
    print_rows(("name", "format", "digest", "path"),
               [(row.name, row.format, row.digest, row.path) for row in rows])
