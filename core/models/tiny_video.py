"""A tiny AnimateDiff motion adapter with seeded weights, written locally.

It fits the tiny image model (core/models/tiny.py): the same UNet block channels and one
motion layer per block, so `AnimateDiffPipeline` can lay it over that model and the
text-to-video path runs for real offline. Its videos are noise; shapes and plumbing are
real. torch and diffusers are imported only while writing.

Like every tiny writer it goes through `tiny.write_model_folder`: the model is built in a
hidden sibling and renamed into place, so a folder holds a complete model or nothing.
"""

from __future__ import annotations

from pathlib import Path

from strata.core.models.tiny import write_model_folder

# The tiny image UNet's block channels and layers per block (core/models/tiny.py): an
# adapter's motion modules sit after each resnet of each block, so both must match.
BLOCK_OUT_CHANNELS = (32, 64)
LAYERS_PER_BLOCK = 1
# Frames one clip may have: the length of the adapter's temporal position table.
MAX_FRAMES = 32


def write_tiny_motion_adapter(folder: Path, seed: int = 0) -> Path:
    """Write a tiny seeded motion adapter to `folder` (a diffusers `MotionAdapter` folder:
    config.json and safetensors weights) and return its path. The same seed always writes
    byte-identical weights."""

    def save(staging: Path) -> None:
        import torch
        from diffusers import MotionAdapter

        # A private copy of the global generator: writing a model leaves the caller's
        # random state alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapter = MotionAdapter(
                block_out_channels=BLOCK_OUT_CHANNELS,
                motion_layers_per_block=LAYERS_PER_BLOCK,
                # 32 and 64 channels both split into 32 groups and 4 heads of 8 or 16.
                motion_norm_num_groups=32,
                motion_num_attention_heads=4,
                motion_max_seq_length=MAX_FRAMES,
            )
        adapter.save_pretrained(staging, safe_serialization=True)  # type: ignore[attr-defined]

    return write_model_folder(Path(folder), save)


