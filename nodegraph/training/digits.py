"""Train the built-in `builtin:digits` text-to-image model from scikit-learn's handwritten digits.

    .venv/bin/python -m nodegraph.training.digits --out nodegraph/builtin/digits

Two stages, both on nodegraph's own models and schedulers: an AutoencoderKL (32×32 RGB → 8×8×4 latents),
then a UNet2DConditionModel jointly with a small CLIP text encoder on epsilon loss with min-SNR weighting
(Hang et al., 2023) over SD's scaled-linear DDPM schedule. The same seed and thread count give the same
weights. The result is an ordinary diffusers-layout pipeline folder in fp16 safetensors.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nodegraph.training import digits_configs as cfgs
from nodegraph.training.digits_data import DIGIT_WORDS, EMPTY_PROMPT_RATE, PROMPT_TEMPLATES, load_digit_images

TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "builtin" / "clip_tokenizer"


@dataclass
class Recipe:
    """Training settings; the defaults are the ones the shipped weights were trained with."""

    seed: int = 0
    vae_steps: int = 300
    vae_lr: float = 2e-3
    unet_steps: int = 2600
    unet_lr: float = 1e-3
    batch_size: int = 64
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.998
    threads: int = 2


@dataclass
class Report:
    stages: dict = field(default_factory=dict)

    def add(self, name: str, steps: int, first_loss: float, last_loss: float, seconds: float) -> None:
        self.stages[name] = {"steps": steps, "first_loss": round(first_loss, 5), "final_loss": round(last_loss, 5),
                             "seconds": round(seconds, 1)}


def _smoothed(losses: list[float], n: int = 50) -> float:
    tail = losses[-n:]
    return sum(tail) / len(tail)


def train_vae(images: torch.Tensor, recipe: Recipe, report: Report):
    """Stage 1: AutoencoderKL on MSE + L1 reconstruction and a tiny KL term (it only has to stay near N(0, I))."""
    vae = cfgs.build_vae(cfgs.VAE_CONFIG).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.vae_lr, total_steps=recipe.vae_steps)
    gen = torch.Generator().manual_seed(recipe.seed)
    losses, start = [], time.perf_counter()
    for _ in tqdm(range(recipe.vae_steps), desc="vae", unit="step", file=sys.stderr):
        x = images[torch.randint(len(images), (recipe.batch_size,), generator=gen)]  # (B, 3, 32, 32)
        posterior = vae.encode(x)
        recon = vae.decode(posterior.sample(generator=gen))
        kl = 0.5 * (posterior.mean.pow(2) + posterior.std.pow(2) - 1.0 - posterior.logvar).mean()
        loss = F.mse_loss(recon, x) + F.l1_loss(recon, x) + 1e-6 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    report.add("vae", recipe.vae_steps, losses[0], _smoothed(losses), time.perf_counter() - start)
    return vae.eval()


@torch.no_grad()
def encode_dataset(vae, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Posterior mean and std of every image (sampled afresh each step) and the latents' scaling factor."""
    means, stds = [], []
    for chunk in images.split(256):
        posterior = vae.encode(chunk)
        means.append(posterior.mean)
        stds.append(posterior.std)
    mean, std = torch.cat(means), torch.cat(stds)  # (N, 4, 8, 8)
    # SD's convention: scale latents to unit variance so the DDPM schedule's noise levels mean the same thing.
    scaling = 1.0 / (mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))).std().item()
    return mean, std, scaling


def prompt_table(tokenizer) -> tuple[torch.Tensor, list[list[int]]]:
    """Token ids of every prompt the recipe uses (row 0 is the empty prompt) and each digit's row numbers."""
    prompts, rows = [""], []
    for d in range(10):
        rows.append([])
        for template in PROMPT_TEMPLATES:
            rows[d].append(len(prompts))
            prompts.append(template.format(d=d, w=DIGIT_WORDS[d]))
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids  # (P, 77)
    return ids, rows


def train_unet(latent_mean, latent_std, scaling, labels, tokenizer, recipe: Recipe, report: Report):
    """Stage 2: UNet + text encoder on epsilon loss; returns EMA copies of both."""
    from nodegraph.schedulers import create_scheduler

    unet = cfgs.build_unet(cfgs.UNET_CONFIG).train()
    text_encoder = cfgs.build_text_encoder(cfgs.TEXT_ENCODER_CONFIG).train()
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    noise_schedule = create_scheduler(cfgs.TRAIN_SCHEDULER_CONFIG)
    alphas_cumprod = noise_schedule.alphas_cumprod.float()  # (1000,)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    loss_weight = snr.clamp(max=recipe.min_snr_gamma) / snr  # min-SNR-γ for epsilon prediction

    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.unet_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.unet_lr, total_steps=recipe.unet_steps,
                                                pct_start=0.05)
    ids, rows = prompt_table(tokenizer)
    gen = torch.Generator().manual_seed(recipe.seed + 1)
    rng = random.Random(recipe.seed)
    losses, start = [], time.perf_counter()
    bar = tqdm(range(recipe.unet_steps), desc="unet+text", unit="step", file=sys.stderr)
    for step in bar:
        idx = torch.randint(len(labels), (recipe.batch_size,), generator=gen)
        x0 = (latent_mean[idx] + latent_std[idx] * torch.randn(latent_mean[idx].shape, generator=gen)) * scaling
        prompt_rows = [_prompt_row(rows[int(labels[i])], rng) for i in idx]
        t = torch.randint(0, len(alphas_cumprod), (recipe.batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        noisy = noise_schedule.add_noise(x0, noise, t)
        context = text_encoder(ids[prompt_rows]).last_hidden_state  # (B, 77, 64)
        pred = unet(noisy, t, encoder_hidden_states=context)
        per_sample = (pred - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (per_sample * loss_weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        _ema_update(ema_unet, unet, step, recipe.ema_decay)
        _ema_update(ema_text, text_encoder, step, recipe.ema_decay)
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{_smoothed(losses):.4f}")
    report.add("unet+text", recipe.unet_steps, losses[0], _smoothed(losses), time.perf_counter() - start)
    return ema_unet, ema_text


def _prompt_row(digit_rows: list[int], rng: random.Random) -> int:
    """A random phrasing of the digit, or the empty prompt (row 0) so CFG's unconditional branch is learnt."""
    return 0 if rng.random() < EMPTY_PROMPT_RATE else digit_rows[rng.randrange(len(digit_rows))]


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, live: torch.nn.Module, step: int, decay: float) -> None:
    # Warm-up: early on the EMA would mostly remember the random initialisation.
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), live.parameters()):
        e.lerp_(p, 1 - d)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodegraph.training.digits", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="pipeline folder to write (replaced if present)")
    parser.add_argument("--seed", type=int, default=Recipe.seed)
    parser.add_argument("--vae-steps", type=int, default=Recipe.vae_steps)
    parser.add_argument("--unet-steps", type=int, default=Recipe.unet_steps)
    parser.add_argument("--threads", type=int, default=Recipe.threads)
    args = parser.parse_args(argv)
    recipe = Recipe(seed=args.seed, vae_steps=args.vae_steps, unet_steps=args.unet_steps, threads=args.threads)

    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)  # module initialisation
    from transformers import CLIPTokenizer

    start, report = time.perf_counter(), Report()
    images, labels = load_digit_images(size=32)
    vae = train_vae(images, recipe, report)
    mean, std, scaling = encode_dataset(vae, images)
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    unet, text_encoder = train_unet(mean, std, scaling, labels, tokenizer, recipe, report)
    cfgs.save_pipeline(args.out, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer_dir=TOKENIZER_DIR,
                       scaling_factor=scaling)
    total = time.perf_counter() - start
    summary = {"recipe": recipe.__dict__, "stages": report.stages, "scaling_factor": round(scaling, 5),
               "wall_seconds": round(total, 1), "out": str(args.out)}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
