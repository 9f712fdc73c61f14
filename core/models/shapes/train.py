"""Training the shapes model on the CPU: the VAE first, then the text-conditioned UNet (and
the text encoder with it) on the VAE's latents, written as a diffusers folder.

The pipeline has Stable Diffusion's component classes — CLIPTokenizer, CLIPTextModel,
UNet2DConditionModel, AutoencoderKL, DDIMScheduler — so every executor and `from_pipe`
path that runs a real model runs this one. The UNet keeps the tiny model's block
channels (32, 64) and one layer per block, so the tiny motion adapter fits it too.

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
from strata.core.models.shapes import world
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
# for 8x8 latents of flat pictures: even at the last noise step the UNet can read a
# colour from the noise itself (averaging 64 positions), learns to, and then ignores the
# prompt. Half shifts every step 4x towards noise (as "simple diffusion" does for small
# images), so that the colours must come from the text.
LATENT_SPREAD = 0.5
# The UNet predicts v (Salimans & Ho), not the noise: at high noise v is nearly the clean
# latent, so the loss rewards reading the colours from the prompt exactly where sampling
# decides them; predicting the noise there costs almost nothing and teaches nothing.
PREDICTION = "v_prediction"
PROMPT_DROPOUT = 0.1  # the share of empty prompts, which classifier-free guidance needs
DEFAULT_MINUTES = 14.0  # the shipped weights' budget

Say = Callable[[str], None]


@dataclass(frozen=True)
class Budget:
    """Steps per stage for a run of about `minutes` on two idle CPU cores (measured: a VAE
    step of 32 crops ≈ 0.24 s, a UNet step of 64 latents ≈ 0.33 s): 40% for the VAE,
    55% for the UNet."""
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
        return cls(minutes=minutes, vae_steps=round(minutes * 100),
                   scenes=min(8000, round(minutes * 400)), unet_steps=round(minutes * 100))


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
- VAE (4 blocks of 16/32/64/64 channels, 8x8x4 latents): {budget.vae_steps} steps of
  {budget.vae_batch} random 32x32 crops of fresh pictures, L1 + L2 + 1e-6 KL; final loss
  {report.vae_loss:.4f}
- UNet (2 blocks of 32/64 channels, cross-attention at both) trained with the text
  encoder (2 layers, width {TEXT_WIDTH}, {MAX_PROMPT_TOKENS} tokens): {budget.unet_steps}
  steps of {budget.unet_batch} latents of {budget.scenes} fixed pictures, v prediction
  on Stable Diffusion's noise schedule with latents scaled to a spread of
  {LATENT_SPREAD}, AdamW with cosine decay, weights averaged (EMA 0.999); final loss
  {report.unet_loss:.4f}
- the same seed, budget and thread count give the same weights on the same machine

## Quality

Measured by `python bench/shapes_quality.py` (100 random prompts, 20 DDIM steps, guidance
7.5; 20 inpainting trials); see the figures below when they have been added.
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
    # Four blocks downsample by 8: 64 px pictures, 8x8x4 latents, as Stable Diffusion's
    # 512 px and 64x64x4; the UNet's cost, which dominates training, grows with the latent.
    vae: Vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=world.SIZE,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 64), layers_per_block=1, norm_num_groups=NORM_GROUPS,
        mid_block_add_attention=MID_ATTENTION)
    # The posterior's log-variance starts near 0 (a standard deviation of 1, far larger
    # than the means), which drowns the latents in noise and keeps the decoder from
    # learning for many steps; starting it small makes the VAE an autoencoder from step 1.
    with torch.no_grad():
        vae.quant_conv.weight[LATENT_CHANNELS:] = 0
        vae.quant_conv.bias[LATENT_CHANNELS:] = INITIAL_LOG_VARIANCE
    torch.manual_seed(seed)
    unet: UNet = UNet2DConditionModel(
        sample_size=world.SIZE // 8, in_channels=4, out_channels=4,
        block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8,
        # Cross-attention at both resolutions: colour at 8x8, place and shape at 4x4.
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH)
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
            # puts them relative to the 8-pixel cells.
            left, top = (8 * scenes.randint(0, (world.SIZE - CROP) // 8) for _ in range(2))
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


def _encode(vae: Vae, scenes: list[world.Scene], say: Say) -> _Latents:
    """Encode the UNet's training pictures once, and set the VAE's scaling factor so that
    scaled latents have unit variance, as Stable Diffusion's do."""
    import torch

    means, stds = [], []
    with torch.no_grad():
        for start in range(0, len(scenes), 256):
            pictures = [world.render(scene) for scene in scenes[start:start + 256]]
            posterior = vae.encode(_pixels(pictures)).latent_dist
            means.append(posterior.mean)
            stds.append(posterior.std)
    mean, std = torch.cat(means), torch.cat(stds)
    spread = float(torch.sqrt((mean ** 2).mean() + (std ** 2).mean() - mean.mean() ** 2))
    scaling = LATENT_SPREAD / spread
    vae.register_to_config(scaling_factor=scaling)
    say(f"encoded {len(scenes)} pictures: latent scaling factor {scaling:.4f}")
    return _Latents(scenes, mean, std, scaling)


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
        loss = ((predicted - target) ** 2).mean()
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
