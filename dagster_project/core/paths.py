"""The names of every output under data/: one place, used by the assets, the DVC metadata,
the trainer and evaluation.

Folders come from params.yaml (`model.base_dir`, `train.output_dir`, `eval.output_dir`, ...);
the names inside them are written once here, as `Name` descriptors: on an instance a `Name` is
the path (`out.metrics`), on the class it is the name itself (`TrainOutputs.metrics`), which
`dvc(...)` turns into dvc.yaml templates (`${train.output_dir}/metrics.json`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, overload

from dagster_project.core.hashing import folder_sha256


class Name:
    """A file or folder inside a `Folder`: its path on an instance, itself on the class."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, folder: None, owner: type) -> Name: ...

    @overload
    def __get__(self, folder: Folder, owner: type) -> Path: ...

    def __get__(self, folder: Folder | None, owner: type) -> Any:
        return self if folder is None else folder.root / self.name


@dataclass(frozen=True)
class Folder:
    """A folder and the names inside it."""

    root: Path


@dataclass(frozen=True)
class Outputs(Folder):
    """A folder named by a params.yaml key, and the files a stage writes in it."""

    KEY: ClassVar[str]

    @classmethod
    def dvc(cls, *names: Name | str) -> list[str]:
        """`${key}/name` templates for dvc.yaml (a `Name`, or a path relative to the folder)."""
        return [f"${{{cls.KEY}}}/{getattr(n, 'name', n)}" for n in names]


@dataclass(frozen=True)
class BaseModelFiles(Outputs):
    """The base model: a diffusers folder with transformer/ and vae/ (and transformer_2/ with
    the pipeline's config where the model has two experts, image_encoder/ and
    image_processor/ where image-to-video takes CLIP image embeddings, LTX-2's audio and text
    parts)."""

    KEY: ClassVar[str] = "model.base_dir"
    transformer = Name("transformer")
    transformer_2 = Name("transformer_2")  # Wan 2.2 A14B's low-noise expert
    pipeline_config = Name("model_index.json")  # diffusers' name; holds the expert boundary
    vae = Name("vae")
    scheduler = Name("scheduler")
    # Wan 2.1 image-to-video: the CLIP image encoder and its preprocessing (diffusers' names)
    image_encoder = Name("image_encoder")
    image_processor = Name("image_processor")
    # LTX-2: its text connectors, audio VAE and vocoder (diffusers' names)
    connectors = Name("connectors")
    audio_vae = Name("audio_vae")
    vocoder = Name("vocoder")
    identity_file = Name("identity.txt")  # the content hash, written once with the folder

    def record_identity(self) -> str:
        """Hash the folder's content once, when it is written, and keep it beside it."""
        identity = folder_sha256(self.root)
        self.identity_file.write_text(identity + "\n")
        return identity

    def identity(self) -> str:
        """The folder's content hash, as the `base_model` asset recorded it (hashing a large
        model's weights on every run would cost minutes; their modification times would change
        whenever the folder is rewritten with the same content)."""
        return self.identity_file.read_text().strip()


@dataclass(frozen=True)
class CheckpointFiles(Folder):
    """One checkpoint folder (`checkpoints/step-NNNNNN/`), beside accelerate's own files."""

    model = Name("transformer")  # the trainable weights, in the export format
    state = Name("state.json")  # step, losses, the sampler's position, the run's fingerprint
    complete = Name("complete.json")  # written last: every other file and its size


@dataclass(frozen=True)
class TrainOutputs(Outputs):
    """What a training run writes."""

    KEY: ClassVar[str] = "train.output_dir"
    model = Name("model")  # the chosen checkpoint's weights (early stopping's best)
    last_model = Name("last_model")  # the last step's, beside it
    evaluations = Name("evaluations.json")  # the in-loop evaluations and the choice
    start = Name("start.json")  # what the run started from: the base or a parent
    samples_folder = Name("samples")  # each evaluation's sample latents
    checkpoints = Name("checkpoints")
    loss_csv = Name("loss.csv")
    loss_plot = Name("loss.png")
    metrics = Name("metrics.json")
    plan = Name("plan.json")
    failure = Name("failure.txt")  # why the worker failed: the cause, then the traceback
    dvclive = Name("dvclive")  # dvclive's per-step metrics and plots
    # dvclive's files for the curves it logs as "train/loss" and "train/lr"
    LIVE_CURVES: ClassVar[tuple[str, ...]] = (
        "dvclive/plots/metrics/train/loss.tsv",
        "dvclive/plots/metrics/train/lr.tsv",
    )

    def samples(self, step: int) -> Path:
        return self.samples_folder / f"step-{step:06d}.safetensors"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:06d}"

    def checkpoint_folders(self) -> list[Path]:
        """The checkpoints written so far, oldest first."""
        return sorted(self.checkpoints.glob("step-*"))

    @staticmethod
    def checkpoint_step(folder: Path) -> int:
        return int(folder.name.removeprefix("step-"))


@dataclass(frozen=True)
class EvalOutputs(Outputs):
    """What evaluation writes."""

    KEY: ClassVar[str] = "eval.output_dir"
    metrics = Name("metrics.json")
    evaluations_csv = Name("evaluations.csv")  # one row per in-loop evaluation
    samples_csv = Name("samples.csv")  # one row per decoded sample
    report = Name("report.md")
    plot = Name("loss_curve.png")
    sigma_plot = Name("loss_per_sigma.png")
    signs_plot = Name("signs.png")  # diversity and memorization by step
    exposure_plot = Name("exposures.png")
    preview = Name("samples.gif")  # every decoded sample, animated, for the UI
    videos = Name("videos")  # the decoded samples as mp4


@dataclass(frozen=True)
class VersionFiles(Folder):
    """One registered version (`versions/vNNNN/`)."""

    model = Name("model")
    lineage = Name("lineage.json")


@dataclass(frozen=True)
class RegistryFiles(Outputs):
    """The model registry: one folder per registered version (its weights and lineage), the
    table of versions, the promoted version and the last promotion decision."""

    KEY: ClassVar[str] = "automation.registry_dir"
    versions = Name("versions")
    table = Name("registry.parquet")
    promoted = Name("promoted.json")
    report = Name("promotion.md")

    def version(self, name: str) -> VersionFiles:
        return VersionFiles(self.versions / name)


@dataclass(frozen=True)
class SweepOutputs(Outputs):
    """What the exposure sweep writes: one training run per subset, the curve and its reading."""

    KEY: ClassVar[str] = "sweep.output_dir"
    table = Name("sweep.csv")  # one row per evaluation of each run
    plot = Name("sweep.png")
    report = Name("sweep.md")
    recommendation = Name("recommendation.json")

    def run(self, fraction: float) -> TrainOutputs:
        """The training run over `fraction` of the training contents."""
        return TrainOutputs(self.root / f"subset-{fraction:g}")


@dataclass(frozen=True)
class CacheFiles:
    """The encoded dataset a run reads: the manifest, the cache indexes and the cache folder."""

    manifest: Path
    text_index: Path
    latent_index: Path
    cache_dir: Path

    def encode_errors(self, rank: int) -> Path:
        """The windows one encoding process could not decode, and why (several processes)."""
        return self.cache_dir / ".encode" / f"rank-{rank}.json"
