"""A tiny Stable-Diffusion-shaped pipeline with seeded weights, written locally.

It exists so that tests, demos and machines without a real model exercise the real
diffusers code paths offline. Its pictures are noise; its shapes and plumbing are real.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from strata.core.errors import ModelError
from strata.core.models.pipelines import quiet_library_progress
from strata.core.storage.files import fsync_dir, fsync_file

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

# The text encoder's position table and the tokenizer's padding length must agree, as in
# every Stable Diffusion 1.x model.
MAX_PROMPT_TOKENS = 77


class ModelFolderNotEmpty(ModelError, ValueError):
    """The target folder already holds files, and writing would mix two models."""

    def __init__(self, folder: Path) -> None:
        super().__init__(
            f"refusing to write a model into {folder}: the folder exists and is "
            "not empty; choose a new folder or remove this one first"
        )
        self.folder = folder


def write_tiny_pipeline(folder: Path, seed: int = 0) -> Path:
    """Write a tiny seeded Stable Diffusion pipeline to `folder` and return its path.

    The same seed always writes byte-identical weight files. The model is built beside
    `folder` and renamed into place, so `folder` either holds a complete model or nothing.
    """
    def save(staging: Path) -> None:
        _build_pipeline(staging, seed).save_pretrained(staging, safe_serialization=True)  # type: ignore[attr-defined]

    return write_model_folder(Path(folder), save)


def write_model_folder(folder: Path, save: Callable[[Path], None]) -> Path:
    """Run `save(staging)` in a hidden sibling of `folder`, then rename it into place, so
    that `folder` holds a whole model or nothing. Refuses (ModelFolderNotEmpty) a folder
    that already holds files, before and at the rename, so two models never mix."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ModelFolderNotEmpty(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # A hidden sibling stays on the same filesystem, which is what makes the rename atomic;
    # mkdir (unlike mkdtemp) honours the umask, so the final folder gets normal permissions.
    staging = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        with quiet_library_progress():
            save(staging)
        _fsync_tree(staging)
        try:
            # Replaces an empty folder, fails if another writer filled it in the meantime.
            os.rename(staging, folder)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise ModelFolderNotEmpty(folder) from error
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(folder.parent)
    return folder


def _build_pipeline(staging: Path, seed: int) -> StableDiffusionPipeline:
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer_dir = staging / "tokenizer"
    _write_character_vocabulary(tokenizer_dir)
    # from_pretrained reads vocab.json/merges.txt under transformers 4 and 5 alike; the
    # constructor's keyword names changed between them (vocab_file → vocab).
    tokenizer = CLIPTokenizer.from_pretrained(
        tokenizer_dir, local_files_only=True, model_max_length=MAX_PROMPT_TOKENS
    )

    # fork_rng gives the seeding below a private copy of the global generator, so writing
    # a model does not change the random state of the code that asked for it.
    with torch.random.fork_rng(devices=[]):
        # Seeding before each component keeps one component's weights independent of how
        # many random numbers the others consumed.
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            # A two-block VAE downsamples by 2, not Stable Diffusion's 8, so 64 px images
            # need 32-px latents; pipelines size their default output from this value.
            sample_size=32,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
        )
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(32, 64),
            latent_channels=4,
            sample_size=64,
        )
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=len(tokenizer),
                max_position_embeddings=MAX_PROMPT_TOKENS,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    # The Stable Diffusion 1.x schedule; steps_offset=1 avoids diffusers' "outdated
    # config" warning on every load.
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _write_character_vocabulary(tokenizer_dir: Path) -> None:
    """Write a CLIP vocabulary with one token per byte and no merges.

    CLIP's tokenizer maps text to byte-level symbols before looking tokens up, so covering
    all 256 symbols (alone and as a word ending) means no prompt ever hits the unknown token.
    """
    symbols = sorted(byte_level_alphabet())
    tokens = [*symbols, *(symbol + "</w>" for symbol in symbols)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    tokenizer_dir.mkdir(parents=True)
    (tokenizer_dir / "vocab.json").write_text(
        json.dumps({token: index for index, token in enumerate(tokens)}, ensure_ascii=False),
        encoding="utf-8",
    )
    (tokenizer_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")


def byte_level_alphabet() -> set[str]:
    """The 256 printable stand-ins that GPT-2/CLIP byte-level tokenizers use for bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    # The other bytes are represented by the code points just past 255.
    shifted = 256 - len(printable)
    return {chr(byte) for byte in printable} | {chr(256 + n) for n in range(shifted)}


def _fsync_tree(root: Path) -> None:
    # Without this, a power cut shortly after the rename could leave empty weight files
    # under the final name on filesystems that reorder data and metadata writes.
    for directory, _, files in os.walk(root):
        for name in files:
            fsync_file(Path(directory, name))
        fsync_dir(Path(directory))
