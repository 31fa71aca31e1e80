"""In-loop evaluation: what the trainer calls every `eval.every` steps (and at step 0 and the
last step) to score the model it is training, and to decide whether to stop.

Each evaluation records, in latent space (cheap enough to run inside the loop):
- the loss at fixed noise levels with fixed noise per clip and level, on the validation clips
  and on a fixed subset of training clips, per level and averaged, and the gap between them;
- `samples_per_prompt` samples per validation prompt through the family's pipeline with fixed
  seeds (their latents are saved, so the evaluation asset decodes them without re-sampling);
- diversity within a prompt and across prompts, and for every sample its nearest training
  clip (named), its similarity to it and to the nearest validation clip, and a memorization
  flag when the first exceeds the second by more than `eval.memorization_threshold`.

The history is part of every checkpoint (`state_dict`), so a resumed run keeps its reference
(step 0) and its early-stopping count; the decision itself is replayed from the history by
`evaluation.verdict`.
"""

from __future__ import annotations

import shutil

import polars as pl
import torch
from safetensors.torch import save_file

from dagster_project.core.atomic import atomic_path
from dagster_project.core.params import EvalParams
from dagster_project.core.paths import TrainOutputs
from dagster_project.core.shapes import Bucket
from dagster_project.evaluation.diversity import (
    clip_features,
    grouped_pairs,
    mean_pairwise_distance,
    pooled,
)
from dagster_project.evaluation.validation import (
    fixed_sigma_loss,
    fixed_sigma_losses,
    load_clip_conditioning,
    load_clip_latents,
)
from dagster_project.evaluation.verdict import StopDecision, early_stopping
from dagster_project.models.spec import ModelSpec

# the settings that shape the recorded numbers: changing one makes the history incomparable
RECORDED = (
    "every",
    "sigmas",
    "train_subset",
    "samples_per_prompt",
    "max_prompts",
    "inference_steps",
    "guidance_scale",
    "seed",
    "memorization_threshold",
)


def sigma_column(name: str, sigma: float) -> str:
    """The column of one noise level's loss, e.g. `val_loss@0.3`."""
    return f"{name}@{sigma:g}"


def sample_key(prompt: int, seed: int) -> str:
    """The name of one sample's latent in a samples file."""
    return f"prompt{prompt}_seed{seed}"


def output_key(key: str, output: str) -> str:
    """The name of one of a sample's latents in a samples file (`ModelSpec.generate`'s outputs):
    the video's is the sample's key, another's (LTX-2's "audio") the key and its name."""
    return key if output == "video" else f"{key}/{output}"


def sample_latents(key: str, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A sample's latents (`ModelSpec.generate`'s) under their names in a samples file."""
    return {output_key(key, name): latent for name, latent in outputs.items()}


class RunMonitor:
    """The trainer's in-loop evaluator (training.trainer.StepEvaluator) over a run's clips."""

    def __init__(
        self,
        cfg: EvalParams,
        spec: ModelSpec,
        train: pl.DataFrame,
        val: pl.DataFrame,
        out: TrainOutputs,
    ) -> None:
        if val.height == 0:
            raise RuntimeError(
                "no validation clips: put some under a validation/ folder, list them in "
                "data.val_files or raise data.val_fraction"
            )
        self.cfg, self.spec, self.out = cfg, spec, out
        self.fingerprint = {key: getattr(cfg, key) for key in RECORDED}
        self.val_latents = load_clip_latents(val, spec)
        self.val_text = load_clip_conditioning(val)
        train_latents = load_clip_latents(train, spec)
        subset = train.head(cfg.train_subset)
        self.subset_latents = train_latents[: subset.height]
        self.subset_text = load_clip_conditioning(subset)
        self.train_names = train["path"].to_list()
        # image-to-video: the first frame is given, so samples and clips compare after it
        self.compared = slice(1, None) if spec.task == "i2v" else slice(None)
        references = [x[:, self.compared] for x in train_latents + self.val_latents]
        self.center = torch.stack([pooled(x) for x in references]).mean(dim=0)
        self.train_features = self.features(train_latents)
        self.val_features = self.features(self.val_latents)
        # one prompt per clip (a long clip's windows share its caption)
        prompts = (
            val.with_row_index("row")
            .unique("sha256", keep="first", maintain_order=True)
            .head(cfg.max_prompts)
        )
        self.prompts = [
            (row["caption"], Bucket.parse(row["bucket"]), self.val_text[row["row"]])
            for row in prompts.iter_rows(named=True)
        ]
        self.seeds = [cfg.seed + i for i in range(cfg.samples_per_prompt)]
        self.history: list[dict] = []

    # what the trainer calls
    def due(self, step: int, last_step: int) -> bool:
        """Step 0 (the base), every `eval.every` steps and the last step."""
        return step % self.cfg.every == 0 or step == last_step

    @torch.no_grad()
    def evaluate(self, step: int, transformer: torch.nn.Module, device: torch.device) -> str:
        """Score `transformer` (in eval mode; the caller restores its mode and the RNG), which
        computes on `device` (the VAE and encoders sampling needs move there), record the
        evaluation and save its samples; returns a log line."""
        cfg, spec = self.cfg, self.spec
        spec.place_on(device)
        val = fixed_sigma_losses(
            spec, transformer, self.val_latents, self.val_text, cfg.sigmas, cfg.seed, device
        )
        train = fixed_sigma_loss(
            spec, transformer, self.subset_latents, self.subset_text, cfg.sigmas, cfg.seed, device
        )
        samples = {
            (p, seed): {
                name: latent.cpu()
                for name, latent in spec.generate(
                    transformer, text, bucket, seed, cfg.inference_steps, cfg.guidance_scale
                ).items()
            }
            for p, (_, bucket, text) in enumerate(self.prompts)
            for seed in self.seeds
        }
        if step == 0:  # a fresh run: an earlier run's samples are not this one's
            shutil.rmtree(self.out.samples_folder, ignore_errors=True)
        path = self.out.samples(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            # the video's latent under the sample's key, its audio's (LTX-2) beside it
            latents = {
                name: latent.contiguous()
                for k, outputs in samples.items()
                for name, latent in sample_latents(sample_key(*k), outputs).items()
            }
            save_file(latents, str(tmp))
        videos = {k: outputs["video"] for k, outputs in samples.items()}
        record = {"step": step, **self._losses(val, train), **self._samples(videos)}
        self.history = [r for r in self.history if r["step"] < step] + [record]
        return (
            f"evaluation at step {step}: validation loss {record['val_loss']:.4f} "
            f"(gap {record['gap']:+.4f}), diversity {record['diversity']:.4f}, "
            f"{record['memorized']}/{record['samples']} samples memorized"
        )

    def decision(self) -> StopDecision:
        """The early-stopping rule over the evaluations so far."""
        return early_stopping(self.history, self.cfg)

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the evaluations so far (the rule replays them)."""
        return {"history": self.history}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint's `state_dict`."""
        self.history = list(state["history"])

    # scoring
    def _losses(
        self, by_modality: dict[str, dict[float, float]], train: dict[float, float]
    ) -> dict[str, float]:
        val = by_modality["loss"]
        row = {
            "val_loss": sum(val.values()) / len(val),
            "train_fixed_loss": sum(train.values()) / len(train),
        }
        row["gap"] = row["val_loss"] - row["train_fixed_loss"]  # grows as a run overfits
        # per noise level too: overfitting shows first where the clip's detail is decided
        row |= {sigma_column("val_loss", s): v for s, v in val.items()}
        row |= {sigma_column("train_fixed_loss", s): v for s, v in train.items()}
        # each modality's apart (LTX-2: video, audio): a stream that stops learning shows
        for name, losses in by_modality.items():
            if name != "loss":
                row[f"val_loss_{name}"] = sum(losses.values()) / len(losses)
                row |= {sigma_column(f"val_loss_{name}", s): v for s, v in losses.items()}
        return row

    def features(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """The compared frames of each latent [C, f, h, w] as unit features [N, D]."""
        return torch.stack([clip_features(x[:, self.compared], self.center) for x in latents])

    def _samples(self, samples: dict[tuple[int, int], torch.Tensor]) -> dict:
        keys = list(samples)
        features = self.features([samples[k] for k in keys])
        to_train = features @ self.train_features.T
        to_val = features @ self.val_features.T
        rows = []
        for i, (prompt, seed) in enumerate(keys):
            nearest = int(to_train[i].argmax())
            margin = float(to_train[i, nearest] - to_val[i].max())
            rows.append(
                {
                    "prompt": prompt,
                    "caption": self.prompts[prompt][0],
                    "seed": seed,
                    "nearest_train_clip": self.train_names[nearest],
                    "nearest_train": float(to_train[i, nearest]),
                    "nearest_val": float(to_val[i].max()),
                    "margin": margin,
                    "memorized": margin > self.cfg.memorization_threshold,
                }
            )
        by_prompt = [[i for i, k in enumerate(keys) if k[0] == p] for p in range(len(self.prompts))]
        within = [mean_pairwise_distance(features[group]) for group in by_prompt]
        across = [1 - float(features[i] @ features[j]) for i, j in grouped_pairs(by_prompt)[1]]
        return {
            "diversity": sum(within) / len(within),
            "diversity_across": sum(across) / len(across) if across else None,
            "nearest_train": sum(r["nearest_train"] for r in rows) / len(rows),
            "nearest_val": sum(r["nearest_val"] for r in rows) / len(rows),
            "memorization": sum(r["margin"] for r in rows) / len(rows),
            "memorized": sum(r["memorized"] for r in rows),
            "samples": len(rows),
            "sample_rows": rows,
        }
