"""Training the shapes model on the CPU: the VAE first, then the text-conditioned UNet (and
the text encoder with it) on the VAE's latents, written as a diffusers folder.

The pipeline has Stable Diffusion's component classes — CLIPTokenizer, CLIPTextModel,
UNet2DConditionModel, AutoencoderKL, DDIMScheduler — so every executor and `from_pipe`
path that runs a real model runs this one. The UNet keeps the tiny model's blocks
(32 and 64 channels, one layer each, cross-attention in the lower one), so the tiny
motion adapter fits it too.

A run is a fixed number of steps derived from its minutes, never a deadline: the same
seed, minutes and thread count give the same weights on the same machine, however busy
it is. torch is imported inside the functions (design rule 6).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from strata.core.errors import InvalidInput
from strata.core.models.registry import SETTINGS_FILE
from strata.core.models.shapes import DEFAULT_MINUTES, world
from strata.core.models.shapes.tokenizer import write_vocabulary
from strata.core.models.tiny import write_model_folder

if TYPE_CHECKING:
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

# diffusers' classes reach mypy without their torch.nn.Module ancestry (the library loads
# lazily), so its models go by these names, for the reader only.
Vae: TypeAlias = Any  # AutoencoderKL
UNet: TypeAlias = Any  # UNet2DConditionModel
Pipeline: TypeAlias = Any  # StableDiffusionPipeline

MAX_PROMPT_TOKENS = 32  # the world's prompts take at most 14
TEXT_WIDTH = 64  # the text encoder's width, and the UNet's cross-attention width
# The VAE trains on 32x32 crops: it is convolutional, and a quarter of the pixels costs a
# quarter of the time.
CROP = 32
LATENT_CHANNELS = 4  # as Stable Diffusion's: inpainting with a plain UNet needs 4
# The VAE's blocks: three halve the picture twice, 64 px to 16x16 latents. Stable
# Diffusion's factor of 8 (8x8 latents here) blurred a small shape into one or two cells:
# such a VAE gave a shape's colour back right in 56% of reconstructions.
VAE_CHANNELS = (16, 32, 64)
DOWNSCALE = 2 ** (len(VAE_CHANNELS) - 1)
INITIAL_LOG_VARIANCE = -8.0
VAE_LR = 1e-3
# Few groups: with one channel per group GroupNorm is an instance norm, which erases a
# flat picture's colour (its per-channel mean) before the decoder ever sees it.
NORM_GROUPS = 1
# Without attention in its middle block the VAE is a plain convolutional autoencoder,
# which learns this world several times faster (measured: loss 0.22 against 0.50 after
# 300 steps).
MID_ATTENTION = False
UNET_LR = 1e-3
# The standard deviation of the scaled latents. Stable Diffusion's 1.0 is too much signal
# for 16x16 latents of flat pictures: even at the last noise step the UNet can read a
# colour from the noise itself (averaging 256 positions), learns to, and then ignores
# the prompt. 0.35 shifts every step 8x towards noise (as "simple diffusion" does for
# small images), so that the colours must come from the text.
LATENT_SPREAD = 0.35
# The UNet predicts v (Salimans & Ho), not the noise: at high noise v is nearly the clean
# latent, so the loss rewards reading the colours from the prompt exactly where sampling
# decides them; predicting the noise there costs almost nothing and teaches nothing.
PREDICTION = "v_prediction"
# The UNet's loss counts a latent cell (1 + SHAPE_WEIGHT x the share of it the shape
# covers) times: a shape covers a tenth of the picture or less, and with equal weights
# the background's colour is nine tenths of what there is to learn, the shape's colour
# and place almost nothing.
SHAPE_WEIGHT = 4.0
PROMPT_DROPOUT = 0.1  # the share of empty prompts, which classifier-free guidance needs
# The guidance the model's folder recommends for generation (registry.recommended_cfg), so
# that requests without a cfg take it. Measured on the shipped weights with
# bench/shapes_quality.py (100 prompts, 20 steps): both colours right in 89% and the place
# in 99% at 2, against 38% and 72% at Stable Diffusion's usual 7.5, which overshoots a
# model this small. Inpainting is the other way round (a yellow star where a shape was:
# 35% at 2, 55% at 5.5, 85% at 7.5): it has to overrule the picture around the mask, so
# edits keep the usual default.
RECOMMENDED_CFG = {"generation": 2.0}

Say = Callable[[str], None]


@dataclass(frozen=True)
class Budget:
    """Steps per stage for a run of at most about `minutes` on two idle CPU cores
    (measured: a VAE step of 32 crops ≈ 0.19 s, a UNet step of 64 latents 0.6 to 0.75 s, so
    the shipped 28 minutes took 20): 15% for the VAE, 80% for the UNet."""
    minutes: float
    vae_steps: int
    scenes: int
    unet_steps: int
    vae_batch: int = 32
    unet_batch: int = 64

    @classmethod
    def for_minutes(cls, minutes: float) -> Budget:
        if not (math.isfinite(minutes) and 0.5 <= minutes <= 600):
            raise InvalidInput(f"--minutes must be between 0.5 and 600, not {minutes}")
        return cls(minutes=minutes, vae_steps=round(minutes * 45),
                   scenes=min(10_000, round(minutes * 400)), unet_steps=round(minutes * 62))


@dataclass(frozen=True)
class TrainingReport:
    folder: Path
    budget: Budget
    seed: int
    threads: int
    seconds: float
    vae_loss: float
    unet_loss: float


def train_shapes(folder: Path, minutes: float = DEFAULT_MINUTES, seed: int = 0,
                 threads: int = 2, say: Say | None = None,
                 budget: Budget | None = None) -> TrainingReport:
    """Train the shapes model and write it to `folder` (which must be new or empty),
    whole or not at all. `budget` (steps set directly) overrides `minutes`."""
    budget = budget or Budget.for_minutes(minutes)
    report: dict[str, Any] = {}

    def save(staging: Path) -> None:
        import torch

        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        # A private copy of the global generator: training leaves the caller's state alone.
        try:
            with torch.random.fork_rng(devices=[]):
                pipeline, losses = _train(staging, budget, seed, say or (lambda _: None))
        finally:
            torch.set_num_threads(previous_threads)
        pipeline.save_pretrained(staging, safe_serialization=True)  # type: ignore[attr-defined]
        (staging / SETTINGS_FILE).write_text(json.dumps({"cfg": RECOMMENDED_CFG}) + "\n",
                                             encoding="utf-8")
        report.update(losses, seconds=time.monotonic() - started)
        _write_card(staging, TrainingReport(folder=Path(folder), budget=budget, seed=seed,
                                            threads=threads, **report))

    started = time.monotonic()
    write_model_folder(Path(folder), save)
    return TrainingReport(folder=Path(folder), budget=budget, seed=seed, threads=threads,
                          **report)


def _write_card(staging: Path, report: TrainingReport) -> None:
    """The model card: what the model is, what it was trained on and how; the quality
    figures are measured afterwards by bench/shapes_quality.py."""
    budget = report.budget
    words = lambda names: ", ".join(names)  # noqa: E731
    (staging / "training.json").write_text(json.dumps(
        {"budget": asdict(budget), "seed": report.seed, "threads": report.threads,
         "seconds": round(report.seconds, 1), "vae_loss": report.vae_loss,
         "unet_loss": report.unet_loss}, indent=2) + "\n", encoding="utf-8")
    (staging / "README.md").write_text(f"""# shapes: a small text-to-image model of flat shapes

A Stable-Diffusion-shaped diffusers pipeline (CLIPTokenizer, CLIPTextModel,
UNet2DConditionModel, AutoencoderKL, DDIMScheduler) trained from scratch on the CPU by
`strata model train-shapes` (strata/core/models/shapes/train.py) on pictures it draws
itself with Pillow. Nothing was downloaded; no other data was used.

## What it draws

64x64 pictures of one flat shape on a flat background, from prompts such as
"a small red circle on a blue background, top left":

- shapes: {words(world.SHAPES)}
- colours (shape and background): {words(world.COLOURS)}
- positions: {words(world.POSITIONS)} ("center" too)
- sizes: {words(world.SIZES)}

The size, the background and the position may be left out (chance decides them then);
training left them out {world.LEFT_OUT["size"]:.0%}, {world.LEFT_OUT["background"]:.0%} and
{world.LEFT_OUT["position"]:.0%} of the time, and showed an empty prompt
{PROMPT_DROPOUT:.0%} of the time (for classifier-free guidance). Other words are read
letter by letter and mean nothing to it.

## Training

- seed {report.seed}; {report.threads} CPU thread{"s" if report.threads > 1 else ""};
  {report.seconds / 60:.1f} minutes on the machine that trained it (the budget:
  {budget.minutes:g} minutes on two idle cores)
- VAE ({len(VAE_CHANNELS)} blocks of {"/".join(map(str, VAE_CHANNELS))} channels, \
{world.SIZE // DOWNSCALE}x{world.SIZE // DOWNSCALE}x{LATENT_CHANNELS} latents): \
{budget.vae_steps} steps of {budget.vae_batch} random {CROP}x{CROP} crops of fresh \
pictures, L1 + L2 + 1e-6 KL; final loss {report.vae_loss:.4f}
- UNet (2 blocks of 32/64 channels, cross-attention in the lower one and the middle,
  the pooled prompt added to the timestep's embedding) trained with the text encoder
  (2 layers, width {TEXT_WIDTH}, {MAX_PROMPT_TOKENS} tokens): {budget.unet_steps} steps
  of {budget.unet_batch} latents of {budget.scenes} fixed pictures, v prediction on
  Stable Diffusion's noise schedule with latents scaled to a spread of {LATENT_SPREAD},
  each latent cell's error weighed 1 + {SHAPE_WEIGHT:g} x the share of it the shape
  covers, AdamW with cosine decay, weights averaged (EMA 0.999); final loss
  {report.unet_loss:.4f}
- the same seed, budget and thread count give the same weights on the same machine

## Quality

Measured by `python bench/shapes_quality.py` (100 random prompts, 20 DDIM steps; 20
inpainting trials) at the guidance the folder's strata.json recommends: {RECOMMENDED_CFG}
(other requests: Strata's default, 7.5); see the figures below when they have been added.
""", encoding="utf-8")


def _train(staging: Path, budget: Budget, seed: int,
           say: Say) -> tuple[Pipeline, dict[str, float]]:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    torch.manual_seed(seed)
    tokenizer = _tokenizer(staging / "tokenizer")
    vae, unet, text_encoder = _components(tokenizer, seed)
    scenes = random.Random(seed)

    vae_loss = _train_vae(vae, budget, scenes, say)
    latents = _encode(vae, [world.random_scene(scenes) for _ in range(budget.scenes)], say)
    unet_loss = _train_unet(unet, text_encoder, tokenizer, latents, budget, scenes, say)

    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1,
                              prediction_type=PREDICTION)
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    return pipeline, {"vae_loss": vae_loss, "unet_loss": unet_loss}


def _tokenizer(folder: Path) -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    write_vocabulary(folder, world.WORDS)
    tokenizer: CLIPTokenizer = CLIPTokenizer.from_pretrained(
        folder, local_files_only=True, model_max_length=MAX_PROMPT_TOKENS)
    return tokenizer


def _components(tokenizer: CLIPTokenizer,
                seed: int) -> tuple[Vae, UNet, CLIPTextModel]:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    blocks = len(VAE_CHANNELS)
    vae: Vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=world.SIZE,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks, block_out_channels=VAE_CHANNELS,
        layers_per_block=1, norm_num_groups=NORM_GROUPS, mid_block_add_attention=MID_ATTENTION)
    # The posterior's log-variance starts near 0 (a standard deviation of 1, far larger
    # than the means), which drowns the latents in noise and keeps the decoder from
    # learning for many steps; starting it small makes the VAE an autoencoder from step 1.
    with torch.no_grad():
        vae.quant_conv.weight[LATENT_CHANNELS:] = 0
        vae.quant_conv.bias[LATENT_CHANNELS:] = INITIAL_LOG_VARIANCE
    torch.manual_seed(seed)
    unet: UNet = UNet2DConditionModel(
        sample_size=world.SIZE // DOWNSCALE, in_channels=4, out_channels=4,
        block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8,
        # Cross-attention at 8x8 (and in the middle block): enough cells to place a shape
        # in, and a quarter of the cost of attending at 16x16, which would halve the steps.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        # The prompt, pooled, is added to the timestep's embedding, which every ResNet
        # block reads: colours reach every cell from the first step, where cross-attention
        # alone learned them slowly (the background only, after 1,400 steps).
        addition_embed_type="text", addition_embed_type_num_heads=4)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=TEXT_WIDTH, intermediate_size=TEXT_WIDTH * 2, num_attention_heads=4,
        num_hidden_layers=2, vocab_size=len(tokenizer),
        max_position_embeddings=MAX_PROMPT_TOKENS, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    # CLIP's initialisation (both tables at 0.02) leaves every prompt's encoding within a
    # few percent of every other's, and cross-attention then learns to ignore it. Words
    # that start far apart, with order still visible, give the UNet something to read.
    embeddings = text_encoder.embeddings
    with torch.no_grad():
        embeddings.token_embedding.weight.normal_(0.0, 1.0)
        embeddings.position_embedding.weight.normal_(0.0, 0.5)
    return vae, unet, text_encoder


def _pixels(images: list[Any]) -> torch.Tensor:
    """Pictures as a batch in [-1, 1], channels first, as diffusers' VAEs take them."""
    import numpy as np
    import torch

    array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def _schedule(step: int, total: int, peak: float, warmup: int = 50) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _train_vae(vae: Vae, budget: Budget, scenes: random.Random, say: Say) -> float:
    import torch

    optimizer = torch.optim.AdamW(vae.parameters(), lr=VAE_LR, weight_decay=0.0)
    vae.train()
    loss_value = float("nan")
    for step in range(budget.vae_steps):
        crops = []
        for _ in range(budget.vae_batch):
            # Offsets on the latent grid keep each crop's pixels where the full picture
            # puts them relative to the latent cells.
            left, top = (DOWNSCALE * scenes.randint(0, (world.SIZE - CROP) // DOWNSCALE)
                         for _ in range(2))
            crops.append(world.render(world.random_scene(scenes)).crop(
                (left, top, left + CROP, top + CROP)))
        batch = _pixels(crops)
        posterior = vae.encode(batch).latent_dist
        decoded = vae.decode(posterior.sample()).sample
        loss = ((decoded - batch).abs().mean() + ((decoded - batch) ** 2).mean()
                + 1e-6 * posterior.kl().mean())
        for group in optimizer.param_groups:
            group["lr"] = _schedule(step, budget.vae_steps, VAE_LR)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
        if step % 50 == 0 or step == budget.vae_steps - 1:
            say(f"vae step {step + 1}/{budget.vae_steps}: loss {loss_value:.4f}")
    vae.eval()
    vae.requires_grad_(False)
    return loss_value


@dataclass
class _Latents:
    scenes: list[world.Scene]
    mean: torch.Tensor
    std: torch.Tensor
    scaling: float  # the VAE's scaling factor
    weights: torch.Tensor  # per latent cell, the loss weight (see SHAPE_WEIGHT)


def _encode(vae: Vae, scenes: list[world.Scene], say: Say) -> _Latents:
    """Encode the UNet's training pictures once, set the VAE's scaling factor so that
    scaled latents have a spread of LATENT_SPREAD, and weigh each latent cell by the share
    of it the shape covers."""
    import numpy as np
    import torch
    from PIL import Image

    means, stds = [], []
    with torch.no_grad():
        for start in range(0, len(scenes), 256):
            pictures = [world.render(scene) for scene in scenes[start:start + 256]]
            posterior = vae.encode(_pixels(pictures)).latent_dist
            means.append(posterior.mean)
            stds.append(posterior.std)
    mean, std = torch.cat(means), torch.cat(stds)
    cells = world.SIZE // DOWNSCALE
    coverage = torch.stack([torch.from_numpy(np.asarray(world.silhouette(scene).resize(
        (cells, cells), Image.Resampling.BOX), dtype=np.float32) / 255) for scene in scenes])
    spread = float(torch.sqrt((mean ** 2).mean() + (std ** 2).mean() - mean.mean() ** 2))
    scaling = LATENT_SPREAD / spread
    vae.register_to_config(scaling_factor=scaling)
    say(f"encoded {len(scenes)} pictures: latent scaling factor {scaling:.4f}")
    return _Latents(scenes, mean, std, scaling, (1 + SHAPE_WEIGHT * coverage)[:, None])


def _train_unet(unet: UNet, text_encoder: CLIPTextModel,
                tokenizer: CLIPTokenizer, latents: _Latents, budget: Budget,
                scenes: random.Random, say: Say) -> float:
    import torch
    from diffusers import DDPMScheduler

    noise_schedule: Any = DDPMScheduler(beta_start=0.00085, beta_end=0.012,
                                        beta_schedule="scaled_linear",
                                        prediction_type=PREDICTION)
    trained = [*unet.parameters(), *text_encoder.parameters()]
    average = [parameter.detach().clone() for parameter in trained]
    optimizer = torch.optim.AdamW(trained, lr=UNET_LR, weight_decay=0.01)
    unet.train()
    text_encoder.train()
    count = len(latents.scenes)
    loss_value = float("nan")
    for step in range(budget.unet_steps):
        picks = [scenes.randrange(count) for _ in range(budget.unet_batch)]
        prompts = ["" if scenes.random() < PROMPT_DROPOUT
                   else world.training_prompt(latents.scenes[pick], scenes) for pick in picks]
        index = torch.tensor(picks)
        clean = latents.mean[index] + latents.std[index] * torch.randn_like(latents.mean[index])
        clean = clean * latents.scaling
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(picks),))
        noisy = noise_schedule.add_noise(clean, noise, timesteps)
        tokens = tokenizer(prompts, padding="max_length", max_length=MAX_PROMPT_TOKENS,
                           truncation=True, return_tensors="pt")
        context = text_encoder(tokens.input_ids)[0]
        predicted = unet(noisy, timesteps, context).sample
        target = noise_schedule.get_velocity(clean, noise, timesteps)
        loss = (latents.weights[index] * (predicted - target) ** 2).mean()
        for group in optimizer.param_groups:
            group["lr"] = _schedule(step, budget.unet_steps, UNET_LR)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        # An exponential moving average of the weights samples better than the last ones;
        # its decay warms up so that short runs average over their short history.
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for kept, parameter in zip(average, trained, strict=True):
                kept.lerp_(parameter.detach(), 1 - decay)
        loss_value = float(loss.detach())
        if step % 50 == 0 or step == budget.unet_steps - 1:
            say(f"unet step {step + 1}/{budget.unet_steps}: loss {loss_value:.4f}")
    with torch.no_grad():
        for kept, parameter in zip(average, trained, strict=True):
            parameter.copy_(kept)
    unet.eval()
    text_encoder.eval()
    return loss_value
