"""`strata reproduce`: replay an asset's ancestry and record whether it held.

The rules (what is replayed, the verdicts and their thresholds, how reproductions are
linked) are in core/provenance/reproduce.py.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from strata.api.cli.app import Json, app, console, open_strata, print_json, print_rows
from strata.core.provenance import reproduce as reproduction
from strata.core.provenance.events import Reproduction, ReproductionDiverged, StepCheck


@app.command()
def reproduce(
    ref: Annotated[str, typer.Argument(help="an asset hash prefix")],
    verify: Annotated[bool, typer.Option(
        "--verify", help="exit with status 5 when the reproduction diverged (it is "
        "recorded either way)")] = False,
    allow_model_drift: Annotated[bool, typer.Option(
        "--allow-model-drift", help="run a step whose recorded weights are gone on the "
        "weights now registered (the verdict names the drift) instead of refusing")] = False,
    as_json: Json = False,
) -> None:
    """Replay the asset's whole ancestry with the recorded parameters, seeds and inputs,
    through the same executors, and say for each step whether it came out identical,
    visually the same or different (with the figures). Imported roots and steps made
    outside Strata are taken as given; a model whose weights changed is refused unless
    --allow-model-drift. Records reproduction.verified or reproduction.diverged."""
    say = None if as_json else (lambda line: console.print(f"• {escape(line)}"))
    event = reproduction.reproduce(open_strata(), ref, allow_model_drift=allow_model_drift,
                                   say=say)
    payload = event.payload
    assert isinstance(payload, Reproduction)
    if as_json:
        print_json({"type": event.type, "position": event.position,
                    "event_id": event.event_id, **event.data})
    else:
        print_rows(("pos", "layer", "operation", "outcome", "figures"), [
            (s.position, s.layer, s.operation, s.outcome, _figures(s))
            for s in payload.steps])
        console.print(f"{event.type} (position {event.position}): {escape(payload.summary())}")
    if verify and isinstance(payload, ReproductionDiverged):
        raise reproduction.NotReproduced(
            f"the reproduction diverged at position "
            f"{next(s.position for s in payload.steps if s.step == payload.first_diverged)}: "
            f"{payload.why}")


def _figures(step: StepCheck) -> str:
    """The worst output's figures, in one cell."""
    shown = [o for o in step.outputs if o.verdict == step.outcome and o.figures]
    return ", ".join(f"{k}={v}" for k, v in shown[0].figures.items()) if shown else ""
