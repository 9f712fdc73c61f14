"""`strata edit` through the real command line: a diffusion edit and a Pillow edit run
here with --wait, and a refused edit appends nothing and exits with the input error's code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.api.cli.test_cli import Cli
from tests.api.cli.test_cli_layers import cli, events

__all__ = ["cli"]  # the fixture: a store with the tiny model registered


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the command line's claims; the store's are tested on both backends


def test_edit_inpaint_and_crop_with_wait(cli: Cli, tmp_path: Path) -> None:
    pixels = np.random.RandomState(0).randint(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "src.png")
    source = cli("add", str(tmp_path / "src.png")).stdout.split()[0]

    out = cli("edit", "inpaint", source, "--box", "8,8,16,16", "--prompt", "a red fox",
              "--steps", "2", "--seed", "4", "--feather", "2", "--wait").stdout
    (completed,) = events(cli, "editing.completed")
    (produced,) = completed["data"]["outputs"]
    roles = {i["role"]: i["digest"] for i in produced["inputs"]}
    assert roles["source"].startswith(f"sha256:{source}")
    assert f"mask {roles['mask'][7:19]}" in out and f"→ {produced['asset']['digest'][7:19]}" in out
    (requested,) = events(cli, "editing.requested")
    assert (requested["data"]["seed"], requested["data"]["feather"]) == (4, 2)

    cropped = cli("edit", "crop", produced["asset"]["digest"][7:19], "--box", "8,8,16,16",
                  "--wait").stdout.split("→ ")[1].strip()
    shown = cli("show", cropped).stdout
    assert "operation: crop" in shown and "16x16" in shown

    refused = cli("edit", "crop", source, "--box", "60,0,8,8", ok=False)
    assert refused.returncode == 2
    assert "reaches outside the 64x48 image" in refused.stderr
    assert len(events(cli, "editing.requested")) == 2
