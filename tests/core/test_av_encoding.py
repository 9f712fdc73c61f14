"""The MP4 encoder gives the same bytes for the same frames on every call in a process.

x264's assembly routines did not: on these four frames (a clip of the tiny AnimateDiff
pipeline) about one encode in ten within one process gave other bytes, which made "the
same request gives the same bytes" fail at random. Some routine reads memory it never
wrote, so whether it shows depends on the state of the heap: it showed in a fresh process
that opens the frames from their files, never inside pytest's own process, and never with
synthetic noise, gradients or the clip's own decoded frames. Hence kept frames and a
fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"

ENCODE_200_TIMES = """
import sys
from collections import Counter
from pathlib import Path

from PIL import Image

from strata.core import av

paths = sorted(Path(sys.argv[1]).glob("animatediff_frame*.png"))
frames = [Image.open(path).convert("RGB") for path in paths]
assert len(frames) == 4, paths
encodings = Counter(av.encode_mp4(frames, 8, (64, 64)) for _ in range(200))
print(len(encodings), sorted(encodings.values()))
"""


def test_the_same_frames_always_give_the_same_mp4() -> None:
    done = subprocess.run([sys.executable, "-c", ENCODE_200_TIMES, str(DATA)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "1", f"different encodings of one clip: {done.stdout}"
