"""A seed taken from a batch reproduces alone, in a fresh process: the promise `reproduce`
and `iterate --seed keep` rest on. It holds only if every seed gets its own generator; one
generator shared by the batch would give the second image noise drawn after the first's.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from strata.core.layers import build_executors
from strata.core.layers.generation import build_request
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from tests.conftest import settings_env

PROMPT, STEPS = "a red fox", 2

# A fresh interpreter on the same store (STRATA_HOME from the environment): nothing of the
# batch's process (a loaded pipeline, a generator's state) can leak into the single run.
SINGLE_RUN = f"""
from strata.core.layers import build_executors
from strata.core.layers.generation import build_request
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from strata.core.store import Store

strata = Strata(Store.open())
request = build_request(strata, {PROMPT!r}, model="tiny", n=1, seed=11, steps={STEPS})
jobs.request(strata, request)
row = Worker(strata, build_executors(("generation",))).wait_for(request.job_id)
print(row["status"], *row["outputs"])
"""


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the claim is about the executor, not the database


def batch_and_single(tiny: Strata) -> tuple[bytes, bytes]:
    """The second output of a batch of seeds 10, 11, 12, and seed 11 generated alone in a
    fresh process."""
    request = build_request(tiny, PROMPT, model="tiny", n=3, seed=10, steps=STEPS)
    jobs.request(tiny, request)
    batch = Worker(tiny, build_executors(("generation",))).wait_for(request.job_id)
    assert batch["status"] == "completed" and len(set(batch["outputs"])) == 3

    child = subprocess.run([sys.executable, "-c", SINGLE_RUN],
                           env=settings_env(tiny.store.settings), capture_output=True,
                           text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    status, single = child.stdout.split()
    assert status == "completed"
    return tiny.blobs.read_bytes(batch["outputs"][1]), tiny.blobs.read_bytes(single)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


def test_a_seed_from_a_batch_reproduces_its_image_alone_in_a_fresh_process(
    tiny: Strata,
) -> None:
    from_batch, alone = batch_and_single(tiny)
    difference = np.abs(pixels(from_batch) - pixels(alone))
    # The same starting noise gives the same picture, up to float rounding that depends on
    # the batch size (a level or so in a handful of values). A generator shared by the
    # batch gives seed 11 other noise: a different picture, nearly every value changed.
    # Bytes are not compared: whether the rounding differs at all varies from run to run
    # (batched matrix products take other code paths), so it could only be a flaky test.
    assert difference.max() <= 8
    assert np.count_nonzero(difference) <= difference.size // 100
