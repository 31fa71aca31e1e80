"""The per-step curves survive a kill mid-write: a resumed run reads what is left."""

import json
from pathlib import Path

from dagster_project.training.trainer import StepLog, trim_curves


def test_a_metrics_file_cut_short_by_a_kill_does_not_stop_the_resumed_run(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text("")  # dvclive was killed while writing it
    live = StepLog(str(tmp_path), resume=True, save_dvc_exp=False, dvcyaml=None)
    live.step = 4
    live.log_metric("train/loss", 0.5)
    live.next_step()
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 4
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_trimming_drops_rows_past_the_checkpoint_and_a_row_cut_short(tmp_path: Path) -> None:
    curve = tmp_path / "plots" / "metrics" / "train" / "loss.tsv"
    curve.parent.mkdir(parents=True)
    curve.write_text("timestamp\tstep\tloss\n1\t1\t0.9\n2\t2\t0.8\n3\t3\t0.7\n4\t")
    trim_curves(tmp_path, 2)
    assert curve.read_text().splitlines() == ["timestamp\tstep\tloss", "1\t1\t0.9", "2\t2\t0.8"]
