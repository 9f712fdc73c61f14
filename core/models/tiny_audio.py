"""A tiny AudioLDM text-to-audio pipeline with seeded weights, written locally.

The shapes of diffusers' own AudioLDM test pipeline (a CLAP text encoder with its
projection, a UNet conditioned on it as a class embedding, a one-channel VAE over a mel
spectrogram, a SpeechT5 HiFi-GAN vocoder), a byte-level RoBERTa tokenizer with no merges
(so it is built offline and reads any text), 16 kHz mono out. It exists so that
`strata sound generate` runs the real diffusers path in tests and demos without a
download; its sound is noise. torch, diffusers and transformers are imported only while
writing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from strata.core.models.tiny import MAX_PROMPT_TOKENS, byte_level_alphabet, write_model_folder

if TYPE_CHECKING:
    from diffusers import AudioLDMPipeline

SAMPLE_RATE = 16_000
MEL_BINS = 16
# The vocoder turns one mel frame into prod(UPSAMPLE_RATES) samples: 160, so 100 frames a
# second as in the real AudioLDM; a smaller hop would make a second of sound cost more
# latents to denoise.
UPSAMPLE_RATES = (10, 8, 2)
# transformers initialises the vocoder with std 0.01 by default, which makes it all but
# silent (peaks near 1e-6, zero once written as 16-bit samples); 0.1 makes audible noise.
VOCODER_INIT_STD = 0.1


def write_tiny_audio_pipeline(folder: Path, seed: int = 0) -> Path:
    """Write a tiny seeded AudioLDM pipeline to `folder` and return its path.

    The same seed always writes byte-identical weight files; `folder` ends up holding a
    complete pipeline or nothing (see `write_model_folder`).
    """

    def save(staging: Path) -> None:
        _build_pipeline(staging, seed).save_pretrained(  # type: ignore[attr-defined]
            staging, safe_serialization=True)

    return write_model_folder(Path(folder), save)


def _build_pipeline(staging: Path, seed: int) -> AudioLDMPipeline:
    import torch
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import (
        ClapTextConfig,
        ClapTextModelWithProjection,
        RobertaTokenizer,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    from strata.core.models.registry import quiet_diffusers_warnings

    tokenizer_dir = staging / "tokenizer"
    _write_byte_vocabulary(tokenizer_dir)
    tokenizer = RobertaTokenizer.from_pretrained(
        tokenizer_dir, local_files_only=True, model_max_length=MAX_PROMPT_TOKENS)
    projection = 8
    with torch.random.fork_rng(devices=[]):
        # Seeded before each component, so one component's weights do not depend on how
        # many random numbers the others drew.
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=8,
            in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=(8, 16),
            # AudioLDM conditions on the text as a class embedding, concatenated.
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=projection, class_embeddings_concat=True,
        )
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            block_out_channels=(8, 16), in_channels=1, out_channels=1, norm_num_groups=8,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
        )
        torch.manual_seed(seed)
        text_encoder = ClapTextModelWithProjection(ClapTextConfig(
            hidden_size=8, intermediate_size=37, num_attention_heads=1, num_hidden_layers=1,
            projection_dim=projection, vocab_size=len(tokenizer), layer_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ))
        torch.manual_seed(seed)
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=MEL_BINS, sampling_rate=SAMPLE_RATE, upsample_initial_channel=32,
            upsample_rates=list(UPSAMPLE_RATES),
            upsample_kernel_sizes=[2 * rate for rate in UPSAMPLE_RATES],
            resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
            normalize_before=False, initializer_range=VOCODER_INIT_STD,
        ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    with quiet_diffusers_warnings():  # AudioLDM is deprecated in diffusers, yet runs
        return AudioLDMPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                unet=unet, scheduler=scheduler, vocoder=vocoder)


def _write_byte_vocabulary(tokenizer_dir: Path) -> None:
    """A byte-level BPE vocabulary with RoBERTa's special tokens, one token per byte and
    no merges: every text tokenizes (byte by byte), nothing is downloaded."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokens = [*specials, *sorted(byte_level_alphabet()), "<mask>"]
    tokenizer_dir.mkdir(parents=True)
    (tokenizer_dir / "vocab.json").write_text(
        json.dumps({token: index for index, token in enumerate(tokens)}, ensure_ascii=False),
        encoding="utf-8")
    (tokenizer_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
