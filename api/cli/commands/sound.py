"""Sound commands: `strata sound synth`, `strata sound voice`, `strata sound generate`,
`strata sound add`."""

from __future__ import annotations

from typing import Annotated

import typer

from strata.api.cli.app import app, open_strata
from strata.api.cli.commands.jobs import Wait, submit
from strata.core.decisions import branches
from strata.core.errors import InvalidInput

sound_app = typer.Typer(help="Sound: synthesized beds, speech, audio under a video.",
                        no_args_is_help=True)
app.add_typer(sound_app, name="sound")
Branch = Annotated[str | None, typer.Option(help="default: the current branch")]


@sound_app.command("synth")
def synth(
    preset: Annotated[str, typer.Option(help="pad, pulse or noise")],
    duration: Annotated[float, typer.Option(help="seconds")],
    bpm: Annotated[float, typer.Option(help="beats per minute (pulse, pad's swell)")] = 120.0,
    seed: Annotated[int | None, typer.Option(help="default: random, recorded")] = None,
    branch: Branch = None,
    wait: Wait = False,
) -> None:
    """A deterministic audio bed (WAV) made with numpy."""
    from strata.core.layers.sound import build_synth

    strata = open_strata()
    submit(strata, build_synth(strata, preset, duration, bpm=bpm, seed=seed,
                               branch=branches.resolve(strata, branch)), wait)


@sound_app.command("voice")
def voice(
    text: Annotated[str, typer.Argument(help="what to say")],
    voice_name: Annotated[str, typer.Option("--voice", help="an espeak-ng voice")] = "en",
    speed: Annotated[int, typer.Option(help="words per minute (80 to 500)")] = 175,
    branch: Branch = None,
    wait: Wait = False,
) -> None:
    """Speech through espeak-ng (WAV)."""
    from strata.core.layers.sound import build_voice

    strata = open_strata()
    submit(strata, build_voice(strata, text, voice=voice_name, speed=speed,
                               branch=branches.resolve(strata, branch)), wait)


@sound_app.command("generate")
def generate(
    prompt: Annotated[str, typer.Argument(help="what to hear")],
    duration: Annotated[float, typer.Option(help="seconds (0.1 to 60)")],
    model: Annotated[str, typer.Option(help="a registered text-to-audio model")]
    = "tiny-audio",
    negative: Annotated[str | None, typer.Option(help="negative prompt")] = None,
    seed: Annotated[int | None, typer.Option(help="default: random, recorded")] = None,
    steps: Annotated[int, typer.Option(help="denoising steps")] = 10,
    cfg: Annotated[float, typer.Option(help="classifier-free guidance scale")] = 2.5,
    scheduler: Annotated[str, typer.Option(help="ddim, euler, dpmpp_2m, …")] = "ddim",
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps")] = None,
    branch: Branch = None,
    wait: Wait = False,
) -> None:
    """Sound from a prompt (WAV) through a registered diffusers text-to-audio pipeline."""
    from strata.core.layers.sound import build_generate

    strata = open_strata()
    submit(strata, build_generate(strata, prompt, duration, model=model, seed=seed,
                                  negative_prompt=negative, steps=steps, cfg=cfg,
                                  scheduler=scheduler, device=device,
                                  branch=branches.resolve(strata, branch)), wait)


@sound_app.command("add")
def add(
    video: Annotated[str, typer.Argument(help="the video asset")],
    audio: Annotated[list[str], typer.Option(
        help="an audio asset or file; repeat to mix several tracks")],
    offset: Annotated[list[float], typer.Option(
        help="seconds into the video where the track starts (once, or once per track)")]
    = [],  # noqa: B006
    trim: Annotated[list[str], typer.Option(
        help="S,E: the part of the track to use, in its own seconds (once, or per track)")] = [],  # noqa: B006
    fade_in: Annotated[list[float], typer.Option(help="seconds (once, or per track)")]
    = [],  # noqa: B006
    fade_out: Annotated[list[float], typer.Option(help="seconds (once, or per track)")]
    = [],  # noqa: B006
    gain: Annotated[list[float], typer.Option(help="decibels (once, or per track)")]
    = [],  # noqa: B006
    branch: Branch = None,
    wait: Wait = False,
) -> None:
    """Mix audio tracks under a video (AAC), cut or padded to the video's length."""
    from strata.core.layers.sound import build_add

    strata = open_strata()
    submit(strata, build_add(strata, video, audio, offset=offset,
                             trim=[parse_trim(t) for t in trim], fade_in=fade_in,
                             fade_out=fade_out, gain_db=gain,
                             branch=branches.resolve(strata, branch)), wait)


def parse_trim(spec: str) -> tuple[float, float]:
    try:
        start, end = (float(part) for part in spec.split(","))
    except ValueError:
        raise InvalidInput(f"--trim {spec!r}: expected START,END in seconds, e.g. 0.5,3") from None
    return start, end
