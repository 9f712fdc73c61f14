"""The motion and sound commands through the real command line (few calls: each is ~1 s)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import av
import numpy as np
from PIL import Image

from strata.core.av import SAMPLE_RATE, decode_audio, wav_bytes
from strata.core.config import Settings
from strata.core.service import Strata
from strata.core.store import Store
from tests.api.cli.test_cli import Cli


def made(result_stdout: str) -> str:
    """The short digest of the one output a `--wait` command printed."""
    (line,) = [line for line in result_stdout.splitlines() if line.strip().startswith("→")]
    return line.split()[-1]


def test_motion_then_sound_through_the_command_line(settings: Settings, tmp_path: Path
                                                    ) -> None:
    cli = Cli(settings, tmp_path)
    cli("init", "--no-tiny")
    image, audio = tmp_path / "still.png", tmp_path / "tone.wav"
    Image.new("RGB", (64, 64), (200, 120, 40)).save(image)
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    audio.write_bytes(wav_bytes(np.tile(0.5 * np.sin(2 * np.pi * 440 * t), (2, 1))))
    cli("add", str(image))
    still = hashlib.sha256(image.read_bytes()).hexdigest()[:12]

    clip = made(cli("motion", still, "--kenburns", "zoom=1.2,pan=0.1,0", "--duration", "1",
                    "--fps", "8", "--wait").stdout)
    scored = made(cli("sound", "add", clip, "--audio", str(audio), "--offset", "0.25",
                      "--wait").stdout)
    bed = made(cli("sound", "synth", "--preset", "pulse", "--duration", "1", "--seed", "3",
                   "--wait").stdout)
    cli.env["PATH"] = str(tmp_path)  # no espeak-ng there
    refused = cli("sound", "voice", "hello", ok=False)
    assert refused.returncode != 0 and "apt-get install espeak-ng" in refused.stderr

    log = [json.loads(line) for line in cli("log", "--json", "--limit", "100").stdout.splitlines()]
    completed = sorted((e["type"], e["data"]["operation"]) for e in log
                       if e["type"].endswith(".completed"))
    assert completed == [("motion.completed", "kenburns"), ("sound.completed", "add"),
                         ("sound.completed", "synth")]
    assert not any(e["type"] == "sound.requested" and e["data"]["operation"] == "voice"
                   for e in log)
    strata = Strata(Store.open(settings))
    try:
        with strata.blobs.open(strata.resolve_asset(scored)) as handle:
            data = handle.read()
        bed_bytes = strata.blobs.read_bytes(strata.resolve_asset(bed))
    finally:
        strata.store.close()
    with av.open(io.BytesIO(data)) as container:
        assert sorted(s.codec_context.name for s in container.streams) == ["aac", "h264"]
        assert container.streams.video[0].frames == 8
    loud = np.nonzero(np.abs(decode_audio(io.BytesIO(data))[0]) > 0.01)[0]
    assert abs(loud[0] / SAMPLE_RATE - 0.25) < 0.005
    assert bed_bytes[:4] == b"RIFF"
