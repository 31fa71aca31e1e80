import time

from benchmarks.clips import *
from tests.conftest import materialize

SEL = "videos,manifest,rejects,text_embeddings,video_latents"
folder = DATA_DIR / "exp1"
params = fresh_project(folder, [small_clip(i) for i in range(100)])
t = time.perf_counter()
r = materialize(params, "base_model")
print("base", r.success, time.perf_counter() - t)
t = time.perf_counter()
r = materialize(params, SEL)
print("100", r.success, time.perf_counter() - t)
print(r.asset_materializations_for_node("video_latents")[0].metadata["encoded"].value)
print(r.asset_materializations_for_node("probe")[0].metadata["clips"].value if False else "")
link_clips([small_clip(100)], folder / "data" / "raw")
t = time.perf_counter()
r = materialize(params, SEL)
print("101", r.success, time.perf_counter() - t)
print(r.asset_materializations_for_node("video_latents")[0].metadata["encoded"].value)
p1 = fresh_project(DATA_DIR / "exp1a", [small_clip(100)])
materialize(p1, "base_model")
t = time.perf_counter()
r = materialize(p1, SEL)
print("1", r.success, time.perf_counter() - t)
import polars as pl

m = pl.read_parquet(folder / "data/manifest.parquet")
print(m.height, m.group_by("bucket", "split").len())
print(pl.read_parquet(folder / "data/rejects.parquet"))
