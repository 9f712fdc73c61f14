"""Shared PyAV helpers of the motion and sound layers: encode, decode, mux, versions.

PyAV and numpy are imported inside the functions: layer modules import this package and
`strata log` loads every layer, so importing it must stay cheap.

Every encoder here is set up so that the same input gives the same bytes: x264 runs with
a fixed thread count (its output depends on it) and without its assembly routines (with
them, the same frames gave other bytes in about one encode in a hundred within one
process, more often with frames from `VideoFrame.from_ndarray`: some routine reads memory
it never wrote; the C routines cost about 0.2 s more on sixteen 512x512 frames, nothing
beside the diffusion that made them), frames are converted to yuv420p before
they reach the encoder (PyAV's implicit conversion inside `encode` was seen to vary from
call to call in one process), presentation times are set explicitly, and the container
gets no creation time.
"""

from __future__ import annotations

import io
import platform
import wave
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

from strata.core.config import strata_version

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# x264's output depends on its thread count; one thread is the same everywhere.
X264_THREADS = 1
X264_PRESET = "medium"
X264_CRF = 20
# x264's assembly routines make its output vary from call to call (see above).
X264_ASM = False
AAC_THREADS = 1
# Audio is mixed, synthesized and encoded at one rate, in stereo floats in [-1, 1].
SAMPLE_RATE = 48_000
CHANNELS = 2
AAC_BITRATE = 128_000


def versions() -> dict[str, str]:
    """The versions of everything that shaped an audio or video output."""
    import av
    import numpy
    import PIL

    found = {"pyav": av.__version__, "numpy": numpy.__version__, "pillow": PIL.__version__,
             "python": platform.python_version(), "strata": strata_version()}
    for library, (major, minor, micro) in sorted(av.library_versions.items()):
        found[library] = f"{major}.{minor}.{micro}"
    return found


def video_settings() -> dict[str, Any]:
    """The video encoder's settings that decide the bytes, for the completion record."""
    return {"container": "mp4", "video_codec": "libx264", "pix_fmt": "yuv420p",
            "x264_threads": X264_THREADS, "x264_preset": X264_PRESET, "x264_crf": X264_CRF,
            "x264_asm": X264_ASM}


def audio_settings() -> dict[str, Any]:
    """The audio encoder's settings that decide the bytes, for the completion record."""
    return {"audio_codec": "aac", "audio_bitrate": AAC_BITRATE, "aac_threads": AAC_THREADS,
            "sample_rate": SAMPLE_RATE, "channels": CHANNELS}


def encode_mp4(frames: Iterable[Image.Image], fps: int, size: tuple[int, int],
               audio: np.ndarray | None = None) -> bytes:
    """An H.264/yuv420p MP4 of `frames` (RGB images of `size`, even sides) at `fps`, with
    `audio` (float samples, shape (CHANNELS, n), at SAMPLE_RATE) as an AAC track."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.thread_count = X264_THREADS
        video.options = {"preset": X264_PRESET, "crf": str(X264_CRF),
                         "x264-params": f"asm={int(X264_ASM)}"}
        audio_stream = _add_aac(container) if audio is not None else None
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_image(image.convert("RGB")).reformat(format="yuv420p")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio_stream is not None and audio is not None:
            _encode_audio(container, audio_stream, audio)
    return buffer.getvalue()


def replace_audio(video_source: BinaryIO, audio: np.ndarray) -> bytes:
    """The MP4 of `video_source` with its video stream copied as it is (not re-encoded) and
    `audio` (shape (CHANNELS, n) at SAMPLE_RATE) as its only audio track, in AAC."""
    import av

    buffer = io.BytesIO()
    with av.open(video_source, "r") as source, av.open(buffer, "w", format="mp4") as container:
        source_video = source.streams.video[0]
        video = container.add_stream_from_template(source_video)
        audio_stream = _add_aac(container)
        for packet in source.demux(source_video):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = video
            container.mux(packet)
        _encode_audio(container, audio_stream, audio)
    return buffer.getvalue()


def _add_aac(container: Any) -> Any:
    stream = container.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
    stream.bit_rate = AAC_BITRATE
    stream.thread_count = AAC_THREADS
    return stream


def _encode_audio(container: Any, stream: Any, audio: np.ndarray) -> None:
    import av
    import numpy as np

    planar = np.ascontiguousarray(audio, dtype=np.float32)
    chunk = 1024  # AAC's frame size
    for start in range(0, planar.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(planar[:, start:start + chunk], format="fltp",
                                           layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def decode_audio(source: BinaryIO) -> np.ndarray:
    """Every audio sample of `source` (its first audio stream) as floats of shape
    (CHANNELS, n) at SAMPLE_RATE, whatever its own rate and layout."""
    import av
    import numpy as np

    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    with av.open(source, "r") as container:
        for frame in container.decode(container.streams.audio[0]):
            chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    if not chunks:
        return np.zeros((CHANNELS, 0), dtype=np.float32)
    return np.concatenate(chunks, axis=1).astype(np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 16-bit PCM WAV of `samples` (floats in [-1, 1], shape (channels, n))."""
    import numpy as np

    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(pcm.shape[0])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.T.tobytes())
    return buffer.getvalue()
