"""params.yaml is validated as a whole; errors name the key, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dagster_project.core.params import Params, ParamsError, load_params, parse_params
from dagster_project.core.shapes import FAMILY_SHAPES, Bucket, BucketError, parse_buckets
from tests.conftest import REPO, write_params


def test_repo_params_are_the_defaults() -> None:
    """params.yaml documents the defaults, but for the demo's evaluation interval (its 40 steps
    want more than the default's step-0 and last-step evaluations)."""
    loaded = load_params(REPO / "params.yaml")
    defaults = Params().model_dump(exclude={"root"})
    defaults["eval"]["every"] = 10
    assert loaded.model_dump(exclude={"root"}) == defaults


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train": {"steps": -5}}, "train.steps: Input should be greater than 0 (got -5)"),
        ({"train": {"stepz": 3}}, "train.stepz: unknown key"),
        ({"train": {"batch_size": "2"}}, "train.batch_size: Input should be a valid integer"),
        ({"guard": {"max_exposures": "fifty"}}, "guard.max_exposures: Input should be a valid"),
        ({"data": {"raw_dir": 3}}, "data.raw_dir: Input should be a valid string"),
        ({"eval": {"sigmas": [0.5, 1.5]}}, "eval.sigmas.1: Input should be less than 1"),
        ({"model": {"tiny": {"num_layers": 1.5}}}, "model.tiny.num_layers"),
        ({"train": {"lr_scheduler": "warp"}}, "train.lr_scheduler: Input should be"),
        ({"buckets": {"sizes": [[16, 64, 64]]}}, "buckets.sizes.0: 16x64x64 does not fit wan"),
    ],
)
def test_bad_value_names_the_key(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_params(write_params(tmp_path, **overrides))


def test_unknown_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"trian": {"steps": 3}}))
    with pytest.raises(ParamsError, match="trian: unknown key"):
        load_params(path)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")


WAN, LTX = FAMILY_SHAPES["wan"], FAMILY_SHAPES["ltx"]


def test_bucket_that_breaks_wan_constraints_names_its_index() -> None:
    with pytest.raises(BucketError, match=r"sizes.1: 16x64x64 .* frames 16 is not 4k\+1"):
        parse_buckets([(17, 64, 64), (16, 64, 64)], WAN)
    with pytest.raises(BucketError, match="sizes.0: 17x60x64 .* height 60"):
        parse_buckets([(17, 60, 64)], WAN)


def test_paths_resolve_against_the_params_folder(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path))
    assert params.path(params.data.manifest) == tmp_path / "data" / "manifest.parquet"


def test_bucket_rules_generate_family_conformant_buckets() -> None:
    from dagster_project.core.shapes import generate_buckets

    buckets = generate_buckets([17, 33], [64 * 64, 96 * 96], [1.0, 16 / 9, 9 / 16], WAN)
    assert len(buckets) == 12
    for bucket in buckets:
        assert WAN.check_bucket(*bucket) is None
    assert Bucket(17, 48, 80) in buckets and Bucket(33, 128, 64) in buckets
    ltx = generate_buckets([25], [512 * 512], [1.0, 1.5], LTX)
    assert ltx == [Bucket(25, 416, 640), Bucket(25, 512, 512)]
    with pytest.raises(BucketError, match=r"rules.frames.0: 13 is not 8k\+1 \(ltx\)"):
        generate_buckets([13], [4096], [1.0], LTX)


def test_bucket_sizes_or_rules_not_both(tmp_path: Path) -> None:
    rules = {"frames": [17], "areas": [4096], "aspect_ratios": [1.0]}
    with pytest.raises(ParamsError, match="buckets: give either sizes or rules"):
        load_params(write_params(tmp_path, buckets={"rules": rules}))
    params = load_params(write_params(tmp_path, buckets={"rules": rules, "sizes": None}))
    assert params.buckets.rules.areas == [4096]


@pytest.mark.parametrize(
    ("frames", "width", "height", "expected"),
    [
        (17, 64, 64, Bucket(17, 64, 64)),  # exactly enough frames for the longest bucket
        (16, 64, 64, Bucket(9, 64, 64)),  # one frame short: the shorter bucket
        (8, 64, 64, None),  # shorter than every bucket
        (40, 300, 100, Bucket(33, 64, 64)),  # longest frames win over a better aspect ratio
        (20, 100, 60, Bucket(17, 48, 80)),  # 1.67 -> the wide bucket, in log space
        (20, 60, 100, Bucket(17, 80, 48)),
        (20, 64, 52, Bucket(17, 64, 64)),  # 1.23: nearer 1.0 than 1.67 in log space
    ],
)
def test_bucket_assignment(frames: int, width: int, height: int, expected: Bucket | None) -> None:
    from dagster_project.dataset.buckets import assign_bucket

    buckets = [Bucket(9, 64, 64), Bucket(17, 64, 64), Bucket(17, 48, 80), Bucket(17, 80, 48)]
    buckets.append(Bucket(33, 64, 64))
    assert assign_bucket(frames, width, height, buckets) == expected


def test_a_bare_no_from_dvc_exp_run_means_no_mixed_precision(tmp_path: Path) -> None:
    """`dvc exp run -S` rewrites params.yaml as YAML 1.2, dropping the quotes of "no"."""
    path = write_params(tmp_path)
    path.write_text(path.read_text().replace("mixed_precision: 'no'", "mixed_precision: no"))
    assert "mixed_precision: no\n" in path.read_text()
    assert load_params(path).train.mixed_precision == "no"


def test_a_raw_folder_outside_the_project_is_named_with_its_consequence(tmp_path: Path) -> None:
    inside = parse_params({}, root=tmp_path)
    assert inside.warnings() == []
    outside = parse_params({"data": {"raw_dir": "/srv/videos"}}, root=tmp_path)
    [warning] = outside.warnings()
    assert warning.startswith("data.raw_dir: /srv/videos is outside the project folder")
    assert "dvc.lock" in warning and "cannot reproduce" in warning
