"""The names of every output under data/: one place, used by the assets, the DVC metadata,
the trainer and evaluation.

Folders come from params.yaml (`model.base_dir`, `train.output_dir`, `eval.output_dir`); the
names inside them are fixed here. `dvc(...)` gives the same paths as dvc.yaml templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dagster_project.hashing import folder_sha256


@dataclass(frozen=True)
class Outputs:
    """A folder named by a params.yaml key, and the files a stage writes in it."""

    root: Path
    KEY: ClassVar[str]

    @classmethod
    def dvc(cls, *names: str) -> list[str]:
        """`${key}/name` templates for dvc.yaml."""
        return [f"${{{cls.KEY}}}/{name}" for name in names]


@dataclass(frozen=True)
class BaseModelFiles(Outputs):
    """The base model: a diffusers folder with transformer/ and vae/."""

    KEY: ClassVar[str] = "model.base_dir"
    TRANSFORMER: ClassVar[str] = "transformer"
    VAE: ClassVar[str] = "vae"
    SCHEDULER: ClassVar[str] = "scheduler"
    IDENTITY: ClassVar[str] = "identity.txt"  # the content hash, written once with the folder

    @property
    def transformer(self) -> Path:
        return self.root / self.TRANSFORMER

    @property
    def vae(self) -> Path:
        return self.root / self.VAE

    @property
    def scheduler(self) -> Path:
        return self.root / self.SCHEDULER

    def record_identity(self) -> str:
        """Hash the folder's content once, when it is written, and keep it beside it."""
        identity = folder_sha256(self.root)
        (self.root / self.IDENTITY).write_text(identity + "\n")
        return identity

    def identity(self) -> str:
        """The folder's content hash, as the `base_model` asset recorded it (hashing a large
        model's weights on every run would cost minutes; their modification times would change
        whenever the folder is rewritten with the same content)."""
        return (self.root / self.IDENTITY).read_text().strip()


@dataclass(frozen=True)
class TrainOutputs(Outputs):
    """What a training run writes."""

    KEY: ClassVar[str] = "train.output_dir"
    MODEL: ClassVar[str] = "model"  # the chosen checkpoint's weights (early stopping's best)
    LAST_MODEL: ClassVar[str] = "last_model"  # the last step's, beside it
    EVALUATIONS: ClassVar[str] = "evaluations.json"  # the in-loop evaluations and the choice
    START: ClassVar[str] = "start.json"  # what the run started from: the base or a parent
    SAMPLES: ClassVar[str] = "samples"  # each evaluation's sample latents, step-NNNNNN.safetensors
    CHECKPOINTS: ClassVar[str] = "checkpoints"
    LOSS_CSV: ClassVar[str] = "loss.csv"
    LOSS_PLOT: ClassVar[str] = "loss.png"
    METRICS: ClassVar[str] = "metrics.json"
    PLAN: ClassVar[str] = "plan.json"
    DVCLIVE: ClassVar[str] = "dvclive"  # dvclive's per-step metrics and plots
    # dvclive's files for the curves it logs as "train/loss" and "train/lr"
    LIVE_CURVES: ClassVar[tuple[str, ...]] = (
        "plots/metrics/train/loss.tsv",
        "plots/metrics/train/lr.tsv",
    )
    # inside a checkpoint folder
    CHECKPOINT_MODEL: ClassVar[str] = "transformer"
    CHECKPOINT_STATE: ClassVar[str] = "state.json"

    @property
    def model(self) -> Path:
        return self.root / self.MODEL

    @property
    def last_model(self) -> Path:
        return self.root / self.LAST_MODEL

    @property
    def evaluations(self) -> Path:
        return self.root / self.EVALUATIONS

    @property
    def start(self) -> Path:
        return self.root / self.START

    @property
    def samples_folder(self) -> Path:
        return self.root / self.SAMPLES

    def samples(self, step: int) -> Path:
        return self.samples_folder / f"step-{step:06d}.safetensors"

    @property
    def checkpoints(self) -> Path:
        return self.root / self.CHECKPOINTS

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:06d}"

    def checkpoint_folders(self) -> list[Path]:
        """The checkpoints written so far, oldest first."""
        return sorted(self.checkpoints.glob("step-*"))

    @staticmethod
    def checkpoint_step(folder: Path) -> int:
        return int(folder.name.removeprefix("step-"))

    @property
    def loss_csv(self) -> Path:
        return self.root / self.LOSS_CSV

    @property
    def loss_plot(self) -> Path:
        return self.root / self.LOSS_PLOT

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def plan(self) -> Path:
        return self.root / self.PLAN

    @property
    def dvclive(self) -> Path:
        return self.root / self.DVCLIVE


@dataclass(frozen=True)
class EvalOutputs(Outputs):
    """What evaluation writes."""

    KEY: ClassVar[str] = "eval.output_dir"
    METRICS: ClassVar[str] = "metrics.json"
    EVALUATIONS_CSV: ClassVar[str] = "evaluations.csv"  # one row per in-loop evaluation
    SAMPLES_CSV: ClassVar[str] = "samples.csv"  # one row per decoded sample
    REPORT: ClassVar[str] = "report.md"
    PLOT: ClassVar[str] = "loss_curve.png"
    SIGMA_PLOT: ClassVar[str] = "loss_per_sigma.png"
    SIGNS_PLOT: ClassVar[str] = "signs.png"  # diversity and memorization by step
    EXPOSURE_PLOT: ClassVar[str] = "exposures.png"
    PREVIEW: ClassVar[str] = "samples.gif"  # every decoded sample, animated, for the UI
    VIDEOS: ClassVar[str] = "videos"  # the decoded samples as mp4

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def evaluations_csv(self) -> Path:
        return self.root / self.EVALUATIONS_CSV

    @property
    def samples_csv(self) -> Path:
        return self.root / self.SAMPLES_CSV

    @property
    def report(self) -> Path:
        return self.root / self.REPORT

    @property
    def plot(self) -> Path:
        return self.root / self.PLOT

    @property
    def sigma_plot(self) -> Path:
        return self.root / self.SIGMA_PLOT

    @property
    def signs_plot(self) -> Path:
        return self.root / self.SIGNS_PLOT

    @property
    def exposure_plot(self) -> Path:
        return self.root / self.EXPOSURE_PLOT

    @property
    def preview(self) -> Path:
        return self.root / self.PREVIEW

    @property
    def videos(self) -> Path:
        return self.root / self.VIDEOS


@dataclass(frozen=True)
class RegistryFiles(Outputs):
    """The model registry: one folder per registered version (its weights and lineage), the
    table of versions, the promoted version and the last promotion decision."""

    KEY: ClassVar[str] = "automation.registry_dir"
    VERSIONS: ClassVar[str] = "versions"
    TABLE: ClassVar[str] = "registry.parquet"
    PROMOTED: ClassVar[str] = "promoted.json"
    REPORT: ClassVar[str] = "promotion.md"
    # inside a version folder
    MODEL: ClassVar[str] = "model"
    LINEAGE: ClassVar[str] = "lineage.json"

    @property
    def versions(self) -> Path:
        return self.root / self.VERSIONS

    def version(self, name: str) -> Path:
        return self.versions / name

    @property
    def table(self) -> Path:
        return self.root / self.TABLE

    @property
    def promoted(self) -> Path:
        return self.root / self.PROMOTED

    @property
    def report(self) -> Path:
        return self.root / self.REPORT


@dataclass(frozen=True)
class SweepOutputs(Outputs):
    """What the exposure sweep writes: one training run per subset, the curve and its reading."""

    KEY: ClassVar[str] = "sweep.output_dir"
    TABLE: ClassVar[str] = "sweep.csv"  # one row per evaluation of each run
    PLOT: ClassVar[str] = "sweep.png"
    REPORT: ClassVar[str] = "sweep.md"
    RECOMMENDATION: ClassVar[str] = "recommendation.json"

    def run(self, fraction: float) -> TrainOutputs:
        """The training run over `fraction` of the training contents."""
        return TrainOutputs(self.root / f"subset-{fraction:g}")

    @property
    def table(self) -> Path:
        return self.root / self.TABLE

    @property
    def plot(self) -> Path:
        return self.root / self.PLOT

    @property
    def report(self) -> Path:
        return self.root / self.REPORT

    @property
    def recommendation(self) -> Path:
        return self.root / self.RECOMMENDATION


@dataclass(frozen=True)
class CacheFiles:
    """The encoded dataset a run reads: the manifest, the cache indexes and the cache folder."""

    manifest: Path
    text_index: Path
    latent_index: Path
    cache_dir: Path
