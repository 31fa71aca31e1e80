"""Shape constraints of the model families, one spec each (what buckets must respect)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FamilySpec:
    """Shape constraints a model family puts on buckets."""

    name: str
    frame_multiple: int  # frames = frame_multiple * k + 1
    spatial_multiple: int  # VAE spatial factor x patch size
    fps: float  # the frame rate the family was trained at

    def check_bucket(self, frames: int, height: int, width: int) -> str | None:
        """Return why (frames, height, width) does not fit this family, or None."""
        if (frames - 1) % self.frame_multiple:
            return f"frames {frames} is not {self.frame_multiple}k+1"
        for side, value in (("height", height), ("width", width)):
            if value % self.spatial_multiple:
                return f"{side} {value} is not a multiple of {self.spatial_multiple}"
        return None


# VAE time factor -> frames = k * factor + 1; VAE space factor x patch size -> side multiple
WAN = FamilySpec(name="wan", frame_multiple=4, spatial_multiple=16, fps=16.0)
HUNYUAN = FamilySpec(name="hunyuan", frame_multiple=4, spatial_multiple=16, fps=24.0)
LTX = FamilySpec(name="ltx", frame_multiple=8, spatial_multiple=32, fps=24.0)
FAMILIES = {spec.name: spec for spec in (WAN, HUNYUAN, LTX)}
