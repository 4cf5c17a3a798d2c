"""benchmarks/conv2d_ablation.py: its 1-D variants match DS-CNN-S where they claim to, and its summary's arithmetic."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from nni_kws.cost.counter import count_costs

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "conv2d_ablation.py"


@pytest.fixture(scope="module")
def ablation():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("conv2d_ablation", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    yield module
    sys.path.remove(str(BENCH.parent))
    sys.modules.pop("search_quality", None)


def test_the_1d_variants_match_ds_cnn_s_in_macs_or_in_params(ablation) -> None:
    costs = {name: count_costs(build()) for name, build in ablation.MODELS.items()}
    reference = costs["ds-cnn-s"]
    assert costs["ds-cnn-s-1d-same-macs"]["macs"] == pytest.approx(reference["macs"], rel=0.005)
    assert costs["ds-cnn-s-1d-same-width"]["params"] == pytest.approx(reference["params"], rel=0.1)
    assert costs["ds-cnn-s-1d-same-width"]["macs"] < 0.5 * reference["macs"]  # 1-D at equal width is far cheaper
    model = ablation.MODELS["ds-cnn-s-1d-same-macs"]()
    assert not any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert model.eval()(torch.randn(2, 1, 16000)).shape == (2, 12)


def test_summary_is_each_models_mean_and_2d_minus_each_1d_variant(ablation) -> None:
    def rec(val: float, heldout: float) -> dict:
        return {"val_acc": val, "heldout_acc": heldout}

    models = {"ds-cnn-s@0": rec(0.90, 0.80), "ds-cnn-s@1": rec(0.80, 0.80),
              "ds-cnn-s-1d-same-width@0": rec(0.70, 0.75), "ds-cnn-s-1d-same-width@1": rec(0.80, 0.75),
              "ds-cnn-s-1d-same-macs@0": rec(0.85, 0.81)}
    out = ablation.summary(models)
    assert out["means"]["ds-cnn-s"]["val_acc"] == pytest.approx(0.85)
    assert out["2d_minus_1d-same-width_pts"] == {"val_acc": 10.0, "heldout_acc": 5.0}
    assert out["2d_minus_1d-same-macs_pts"] == {"val_acc": 0.0, "heldout_acc": -1.0}
