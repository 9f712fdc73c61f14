"""Sound end to end: numpy beds, espeak-ng speech, audio mixed under a video (decoded back
with PyAV: streams, codecs, durations, and the audio starting at the recorded offset);
the same request gives the same bytes; bad requests are refused with nothing appended."""

from __future__ import annotations

import io
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from strata.core.av import SAMPLE_RATE, decode_audio, encode_mp4, wav_bytes
from strata.core.errors import InvalidInput, JobError
from strata.core.layers import build_executors
from strata.core.layers.sound import build_add, build_synth, build_voice
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata

SILENCE = 0.01  # below this, a sample counts as silent (AAC leaves a little noise)


def run(strata: Strata, request: Any) -> tuple[str, dict[str, Any]]:
    jobs.request(strata, request)
    row = Worker(strata, build_executors(("sound",))).wait_for(request.job_id)
    assert row["status"] == "completed", row
    (output,) = row["outputs"]
    return output, strata.ledger.read_stream(jobs.stream(request.job_id))[-1].data


def add_file(strata: Strata, path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return strata.add_files([path])[0].data["asset"]["digest"]


def tone(seconds: float, amplitude: float = 0.5, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return np.tile(amplitude * np.sin(2 * np.pi * frequency * t), (2, 1))


def video(strata: Strata, folder: Path, seconds: float = 2.0, fps: int = 8) -> str:
    frames = [Image.new("RGB", (64, 64), (i * 10, 80, 160)) for i in range(round(seconds * fps))]
    return add_file(strata, folder / "clip.mp4", encode_mp4(frames, fps, (64, 64)))


def audible(samples: np.ndarray) -> tuple[float, float]:
    """The first and last moments (s) at which the left channel is not silent."""
    loud = np.nonzero(np.abs(samples[0]) > SILENCE)[0]
    return loud[0] / SAMPLE_RATE, (loud[-1] + 1) / SAMPLE_RATE


def streams_of(data: bytes) -> dict[str, Any]:
    with av.open(io.BytesIO(data)) as container:
        v, a = container.streams.video[0], container.streams.audio[0]
        return {"types": sorted(s.type for s in container.streams), "video": v.codec_context.name,
                "pix_fmt": v.codec_context.pix_fmt, "frames": v.frames,
                "video_s": float(v.duration * v.time_base), "audio": a.codec_context.name,
                "rate": a.codec_context.sample_rate, "channels": a.codec_context.channels}


def read_wav(data: bytes) -> tuple[int, int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as source:
        pcm = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
        return source.getframerate(), source.getnchannels(), pcm.reshape(-1, 2).T / 32767


def test_synth_presets_are_deterministic_wavs(strata: Strata) -> None:
    made = {}
    for preset in ("pad", "pulse", "noise"):
        digest, data = run(strata, build_synth(strata, preset, 1.0, bpm=120, seed=5))
        again, _ = run(strata, build_synth(strata, preset, 1.0, bpm=120, seed=5))
        assert again == digest
        assert data["outputs"][0]["asset"]["media_type"] == "audio/wav"
        assert {"numpy", "pyav"} <= set(data["versions"])
        rate, channels, samples = read_wav(strata.blobs.read_bytes(digest))
        assert (rate, channels, samples.shape[1]) == (48_000, 2, 48_000)
        assert 0.02 < np.sqrt((samples ** 2).mean()) < 0.5
        made[preset] = samples
    # pulse: a blip on every beat (0 s, 0.5 s at 120 bpm), decayed before the next.
    pulse = np.abs(made["pulse"][0])
    assert pulse[24_000:24_000 + 2400].max() > 0.3 > 10 * pulse[22_000:23_900].max()
    other_seed, _ = run(strata, build_synth(strata, "noise", 1.0, seed=6))
    assert not np.array_equal(read_wav(strata.blobs.read_bytes(other_seed))[2], made["noise"])


def test_voice_speaks_through_espeak_and_records_its_version(strata: Strata) -> None:
    digest, data = run(strata, build_voice(strata, "hello from strata", voice="en", speed=160))
    again, _ = run(strata, build_voice(strata, "hello from strata", voice="en", speed=160))
    assert again == digest
    assert data["espeak_ng"].startswith("eSpeak NG")
    asset = data["outputs"][0]["asset"]
    assert asset["media_type"] == "audio/wav"
    samples = decode_audio(io.BytesIO(strata.blobs.read_bytes(digest)))
    assert samples.shape[1] > 0.5 * SAMPLE_RATE and np.abs(samples).max() > 0.1
    requested = strata.ledger.read_stream(jobs.stream(data["job_id"]))[0].data
    assert (requested["voice"], requested["speed"]) == ("en", 160)


def test_voice_without_espeak_says_how_to_install_it(strata: Strata, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    before = strata.ledger.head_position()
    with pytest.raises(JobError, match="apt-get install espeak-ng"):
        build_voice(strata, "hello")
    assert strata.ledger.head_position() == before


def test_add_places_the_audio_at_its_offset_and_pads_to_the_video(strata: Strata,
                                                                  tmp_path: Path) -> None:
    clip = video(strata, tmp_path)
    audio_file = tmp_path / "tone.wav"
    audio_file.write_bytes(wav_bytes(tone(0.5)))
    request = build_add(strata, clip[7:19], [str(audio_file)], offset=[0.5])
    digest, data = run(strata, request)
    out = strata.blobs.read_bytes(digest)
    assert streams_of(out) == {"types": ["audio", "video"], "video": "h264",
                               "pix_fmt": "yuv420p", "frames": 16, "video_s": 2.0,
                               "audio": "aac", "rate": 48_000, "channels": 2}
    start, end = audible(decode_audio(io.BytesIO(out)))
    assert start == pytest.approx(0.5, abs=0.005) and end == pytest.approx(1.0, abs=0.005)
    (track,) = request.tracks
    assert data["placed"] == [{"audio": track.audio, "start": 0.5, "end": 1.0, "cut": 0.0}]
    assert data["padded"] == 1.0 and data["video_duration"] == 2.0
    assert data["encoder"]["video"] == "copied" and data["encoder"]["audio_codec"] == "aac"
    assert data["outputs"][0]["inputs"] == [{"digest": clip, "role": "source"},
                                            {"digest": track.audio, "role": "audio"}]
    # The file became an asset of its own (imported before the request).
    assert strata.blobs.exists(track.audio)
    again, _ = run(strata, build_add(strata, clip, [track.audio], offset=[0.5]))
    assert again == digest


def test_add_cuts_long_audio_and_mixes_trimmed_faded_tracks(strata: Strata,
                                                           tmp_path: Path) -> None:
    clip = video(strata, tmp_path)
    long_low = add_file(strata, tmp_path / "a.wav", wav_bytes(tone(3.0, 0.4, 220)))
    short_high = add_file(strata, tmp_path / "b.wav", wav_bytes(tone(1.0, 0.5, 880)))
    request = build_add(strata, clip, [long_low, short_high], offset=[0.5, 1.0],
                        trim=[(0.0, 3.0), (0.25, 0.75)], gain_db=[0.0, -6.0206],
                        fade_in=[0.0, 0.1])
    digest, data = run(strata, request)
    assert data["placed"] == [
        {"audio": long_low, "start": 0.5, "end": 2.0, "cut": 1.5},
        {"audio": short_high, "start": 1.0, "end": 1.5, "cut": 0.0}]
    assert data["padded"] == 0.0
    mix = decode_audio(io.BytesIO(strata.blobs.read_bytes(digest)))[0]
    assert audible(mix[None, :])[0] == pytest.approx(0.5, abs=0.005)
    spectrum = {}
    for name, (a, b) in {"low only": (0.6, 1.0), "both": (1.2, 1.5),
                         "low again": (1.6, 1.95)}.items():
        window = mix[round(a * SAMPLE_RATE):round(b * SAMPLE_RATE)]
        magnitudes = np.abs(np.fft.rfft(window)) * 2 / len(window)
        freqs = np.fft.rfftfreq(len(window), 1 / SAMPLE_RATE)
        spectrum[name] = {f: magnitudes[np.argmin(np.abs(freqs - f))] for f in (220, 880)}
    assert spectrum["low only"][220] == pytest.approx(0.4, abs=0.03)
    assert spectrum["low only"][880] < 0.01
    # -6.02 dB halves the amplitude: 0.5 → 0.25 (after its 0.1 s fade-in).
    assert spectrum["both"][880] == pytest.approx(0.25, abs=0.03)
    assert spectrum["low again"][880] < 0.01


def test_bad_requests_are_refused_with_nothing_appended(strata: Strata, tmp_path: Path
                                                         ) -> None:
    clip = video(strata, tmp_path)
    sound = add_file(strata, tmp_path / "s.wav", wav_bytes(tone(0.5)))
    image_path = tmp_path / "i.png"
    Image.new("RGB", (8, 8)).save(image_path)
    image = strata.add_files([image_path])[0].data["asset"]["digest"]
    truncated = tmp_path / "cut.wav"
    truncated.write_bytes(wav_bytes(tone(1.0))[:50_000])
    blobs_before = set(strata.blobs.iter_digests())
    before = strata.ledger.head_position()
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: build_add(strata, sound, [sound]), "not a video"),
        (lambda: build_add(strata, image, [sound]), "not a video"),
        (lambda: build_add(strata, clip, [image]), "not audio"),
        (lambda: build_add(strata, clip, [clip]), "not audio"),
        (lambda: build_add(strata, clip, [str(image_path)]), "not audio"),
        (lambda: build_add(strata, clip, [str(truncated)]), "truncated"),
        (lambda: build_add(strata, clip, []), "at least one"),
        (lambda: build_add(strata, clip, [sound], offset=[-1]), "offset"),
        (lambda: build_add(strata, clip, [sound], offset=[1e9]), "offset"),
        (lambda: build_add(strata, clip, [sound], trim=[(2.0, 1.0)]), "start must come"),
        (lambda: build_add(strata, clip, [sound], gain_db=[float("inf")]), "gain_db"),
        (lambda: build_add(strata, clip, [sound, sound], offset=[1, 2, 3]), "once per"),
        (lambda: build_synth(strata, "pad", -1), "duration"),
        (lambda: build_synth(strata, "pad", 0), "duration"),
        (lambda: build_synth(strata, "pad", 1e7), "duration"),
        (lambda: build_synth(strata, "drone", 1), "--preset"),
        (lambda: build_synth(strata, "pulse", 1, bpm=0), "bpm"),
        (lambda: build_voice(strata, ""), "text"),
        (lambda: build_voice(strata, "hi", voice="--evil"), "voice"),
        (lambda: build_voice(strata, "hi", speed=5), "speed"),
    ]
    for attempt, message in cases:
        with pytest.raises(InvalidInput, match=message):
            attempt()
    assert strata.ledger.head_position() == before
    assert set(strata.blobs.iter_digests()) == blobs_before
