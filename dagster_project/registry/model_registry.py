"""The model registry: every trained model kept as a numbered version with its lineage (the data,
params, code and parent it came from, its evaluation), and the one version that is promoted
(what a warm start continues from, and what a user ships).

On disk (`automation.registry_dir`): `versions/vNNNN/{model/, lineage.json}`, the table of
versions (`registry.parquet`) and `promoted.json`. The version folders are the one source of
truth: a version appears whole (model, lineage and the gate's decision, one rename), and the
promoted version is the newest whose lineage says it was promoted. The table and
`promoted.json` are views of them, rewritten after every registration and by `refresh`, so an
interrupted registration leaves either no version or a whole one, and the next run repairs the
views. Plain files and polars: importable by the definitions without loading torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from dagster_project.core.atomic import atomic_dir, write_parquet
from dagster_project.core.paths import RegistryFiles, VersionFiles
from dagster_project.registry.records import Lineage, PromotedPointer, Promotion

# the table of versions: each column's type and where a lineage holds it (missing: null)
TABLE_COLUMNS: dict[str, tuple[type[pl.DataType], tuple[str, ...]]] = {
    "version": (pl.String, ("version",)),
    "created": (pl.String, ("created",)),
    "promoted": (pl.Boolean, ("promoted",)),
    "parent": (pl.String, ("parent",)),
    "verdict": (pl.String, ("evaluation", "verdict")),
    "val_loss": (pl.Float64, ("evaluation", "val_loss")),
    "rescored_val_loss": (pl.Float64, ("promotion", "val_loss")),
    "decision": (pl.String, ("promotion", "reason")),
    "chosen_step": (pl.Int64, ("evaluation", "chosen_step")),
    "exposures_max": (pl.Int64, ("exposures_max",)),
    "raw_dvc_md5": (pl.String, ("data", "raw_dvc_md5")),
    "manifest_sha256": (pl.String, ("data", "manifest_sha256")),
    "params_sha256": (pl.String, ("params_sha256",)),
    "git_commit": (pl.String, ("code", "git_commit")),
    "model_sha256": (pl.String, ("model_sha256",)),
}


def _get(record: object, names: tuple[str, ...]) -> object:
    for name in names:
        record = getattr(record, name, None)
    return record


class ModelRegistry:
    """The versions under one registry folder."""

    def __init__(self, files: RegistryFiles) -> None:
        self.files = files

    def versions(self) -> list[Lineage]:
        """Every version's lineage, oldest first."""
        folders = sorted(self.files.versions.glob("v*")) if self.files.versions.is_dir() else []
        lineages = [VersionFiles(folder).lineage for folder in folders]
        return [Lineage.read(path) for path in lineages if path.is_file()]

    def model(self, version: str) -> Path:
        """The model folder of `version` (what `spec.load_trained` reads)."""
        return self.files.version(version).model

    def promoted(self) -> Lineage | None:
        """The promoted version's lineage (the newest promoted when registered), or None while
        no version is promoted."""
        return next((v for v in reversed(self.versions()) if v.promoted), None)

    def find(self, model_sha256: str) -> Lineage | None:
        """The version holding exactly these weights, if registered already."""
        return next((v for v in self.versions() if v.model_sha256 == model_sha256), None)

    def register(self, model: Path, lineage: Lineage, promotion: Promotion) -> Lineage:
        """Copy `model` into the next version's folder with its lineage and the gate's
        decision, and point `promoted.json` at it when promoted; returns the lineage with its
        `version` name."""
        done = self.versions()
        number = int(done[-1].version.removeprefix("v")) + 1 if done else 1
        # the lineage says whether it was promoted when registered; promoted.json, which is now
        lineage = lineage.model_copy(
            update={
                "version": f"v{number:04d}",
                "promoted": promotion.promote,
                "promotion": promotion,
            }
        )
        with atomic_dir(self.files.version(lineage.version).root) as tmp:
            shutil.copytree(model, VersionFiles(tmp).model)
            lineage.write(VersionFiles(tmp).lineage)
        self.refresh()
        return lineage

    def refresh(self) -> None:
        """Rewrite the views of the version folders: `promoted.json` and the table."""
        promoted = self.promoted()
        if promoted is not None:
            pointer = PromotedPointer(version=promoted.version, reason=promoted.promotion.reason)
            pointer.write(self.files.promoted)
        else:
            self.files.promoted.unlink(missing_ok=True)
        write_parquet(self.table(), self.files.table)

    def table(self) -> pl.DataFrame:
        """One row per version, `promoted` true for the one promoted now."""
        promoted = self.promoted()
        current = promoted.version if promoted else None
        rows = [
            {name: _get(v, names) for name, (_, names) in TABLE_COLUMNS.items()}
            for v in self.versions()
        ]
        for row in rows:
            row["promoted"] = row["version"] == current
        return pl.DataFrame(rows, schema={name: t for name, (t, _) in TABLE_COLUMNS.items()})


def promotion_markdown(version: Lineage, promoted: Lineage | None, model: Path) -> str:
    """Why `version` was (not) promoted, with its lineage (the registry's promotion.md)."""
    gate = version.promotion
    lines = [
        f"# Model {version.version}: {gate.reason}",
        "",
        f"- promoted now: {promoted.version if promoted else 'none'}",
        f"- re-scored validation loss: {gate.val_loss:.4f} (verdict {gate.verdict})",
    ]
    if gate.against:
        lines.append(
            f"- {gate.against}, re-scored on the same clips: {gate.against_val_loss:.4f} "
            f"(verdict {gate.against_verdict})"
        )
    code, data = version.code, version.data
    lines += [
        f"- parent: {version.parent or 'the base model'} (train.init: {version.init})",
        f"- data: raw DVC hash {data.raw_dvc_md5}, manifest sha256 "
        f"{data.manifest_sha256[:16]}, {data.train_clips} clips",
        f"- params sha256 {version.params_sha256[:16]}; code {code.git_commit or '-'}"
        f"{' (modified)' if code.git_dirty else ''}, source {code.source_sha256[:16]}",
        f"- exposures per content over the lineage: max {version.exposures_max}",
        f"- model: {model}",
    ]
    return "\n".join(lines) + "\n"
