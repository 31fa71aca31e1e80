"""The tensor cache trusts only entries that check out, and its tools only touch the cache:
a truncated entry is not cached, a checksum catches finite garbage, and verify and prune refuse
a folder that is not marked as the cache and leave every file outside its layout alone."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from dagster_project.cli.cache_tool import main as cache_tool
from dagster_project.dataset.cache import MARK, CacheError, TensorCache, cache_files, check_entry

KEY = "ab" + "0" * 62
OTHER = "cd" + "1" * 62


def entry() -> dict[str, torch.Tensor]:
    return {"mean": torch.arange(12.0).view(3, 4), "logvar": torch.zeros(3, 4)}


def test_an_entry_counts_as_cached_only_when_whole(tmp_path: Path) -> None:
    cache = TensorCache(tmp_path / "cache", "latents")
    assert KEY not in cache
    cache.write(KEY, entry())
    assert KEY in cache and check_entry(cache.path(KEY)) is None
    assert (tmp_path / "cache" / MARK).is_file()  # the first write marks the folder
    data = cache.path(KEY).read_bytes()
    cache.path(KEY).write_bytes(data[:-10])  # truncated: not cached, so encoded again
    assert KEY not in cache
    assert "truncated" in check_entry(cache.path(KEY))


def test_entries_found_whole_are_trusted_while_their_size_and_mtime_are(tmp_path: Path) -> None:
    cache = TensorCache(tmp_path / "cache", "latents")
    cache.write(KEY, entry())
    cache.write(OTHER, entry())
    assert cache.whole([KEY, OTHER, "ef" + "2" * 62]) == {KEY, OTHER}
    # damaged in place with its size and mtime kept: the remembered stamp is trusted (the
    # checksum, checked by verify and training, catches it) ...
    path, stat = cache.path(KEY), cache.path(KEY).stat()
    path.write_bytes(b"\xff" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert KEY not in cache and cache.whole([KEY]) == {KEY}
    # ... and once it changes (here truncated), it is checked again and not whole
    path.write_bytes(b"\xff" * 10)
    assert cache.whole([KEY, OTHER]) == {OTHER}
    path.unlink()
    cache.write(KEY, entry())  # encoded again: whole
    assert cache.whole([KEY, OTHER]) == {KEY, OTHER}
    # the memo lies outside the cache's layout: prune and verify never see it
    assert cache_files(tmp_path / "cache")[0] == sorted([cache.path(KEY), cache.path(OTHER)])


def test_the_checksum_catches_finite_garbage_and_values_are_checked(tmp_path: Path) -> None:
    cache = TensorCache(tmp_path / "cache", "latents")
    cache.write(KEY, entry())
    data = cache.path(KEY).read_bytes()
    cache.path(KEY).write_bytes(data[:-16] + bytes(16))  # same length, other (finite) values
    assert KEY in cache  # the cheap check passes ...
    assert "checksum mismatch" in check_entry(cache.path(KEY))  # ... the checksum does not
    bad = entry()
    bad["logvar"][1, 2] = float("inf")
    cache.write(OTHER, bad)
    assert "non-finite values in logvar" in check_entry(cache.path(OTHER))


def project(root: Path, cache_dir: str) -> Path:
    """A params.yaml whose indexes reference KEY (latents) and nothing else."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    texts = pl.DataFrame(
        {"sha256": ["s"], "text_key": [None]}, schema_overrides={"text_key": pl.String}
    )
    texts.write_parquet(data / "text_embeddings.parquet")
    pl.DataFrame({"sha256": ["s"], "latent_key": [KEY]}).write_parquet(data / "latents.parquet")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"cache_dir": cache_dir}}))
    return params


def test_prune_touches_only_the_caches_own_files(tmp_path: Path) -> None:
    params = project(tmp_path, "data/cache")
    cache = TensorCache(tmp_path / "data" / "cache", "latents")
    cache.write(KEY, entry())
    cache.write(OTHER, entry())  # unreferenced: pruned
    (cache.path(OTHER).parent / f".{OTHER}.safetensors.x1.tmp").write_bytes(b"partial")
    strangers = [
        tmp_path / "data" / "cache" / "model.safetensors",  # not of the layout: left alone
        tmp_path / "data" / "cache" / "latents" / "notes.safetensors",
        tmp_path / "data" / "weights.safetensors",
    ]
    for stranger in strangers:
        stranger.write_bytes(b"x")
    assert cache_tool(["prune", "--params", str(params)]) == 0
    entries, leftovers = cache_files(tmp_path / "data" / "cache")
    assert entries == [cache.path(KEY)] and leftovers == []
    assert all(stranger.exists() for stranger in strangers)


def test_verify_and_prune_refuse_a_folder_not_marked_as_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    params = project(tmp_path, "data/cache")
    folder = tmp_path / "data" / "cache" / "latents" / KEY[:2]
    folder.mkdir(parents=True)
    (folder / f"{KEY}.safetensors").write_bytes(b"someone else's file")
    for command in ("verify", "prune"):
        assert cache_tool([command, "--params", str(params)]) == 2
        assert "not marked as this project's cache" in capsys.readouterr().err
    assert (folder / f"{KEY}.safetensors").exists()
    with pytest.raises(CacheError):
        cache_files(tmp_path / "data" / "cache")


@pytest.mark.parametrize("cache_dir", ["/", ".", "data", "data/raw/cache", "data/train"])
def test_params_refuse_a_cache_folder_that_is_not_its_own(
    tmp_path: Path, cache_dir: str, capsys: pytest.CaptureFixture
) -> None:
    params = project(tmp_path, cache_dir)
    assert cache_tool(["prune", "--params", str(params)]) == 2
    said = capsys.readouterr().err
    assert "data.cache_dir:" in said and "needs a folder of its own" in said
