"""The pipeline's stages, resume after an interruption, sweeps and the report helpers."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import nni_kws.pipeline.stages as pipeline
from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.pipeline import PipelineConfig, SweepPlan, load_config, run_pipeline, run_sweep, stage_done
from nni_kws.report import pareto_front, plot_pareto, render_report, render_sweep
from nni_kws.space import load_trained_model


def _cfg(tiny_gsc: Path, out: Path, **kw) -> PipelineConfig:
    base = dict(out=str(out), data=str(tiny_gsc), real_test=None, preset="tiny", search_epochs=1, train_epochs=1,
                quant_epochs=1, batch_size=16, progress=False)
    return PipelineConfig(**{**base, **kw})


@pytest.mark.parametrize("split", ["none", "frontend"])
def test_init_from_supernet_weights(tiny_gsc: Path, tmp_path: Path, split: str) -> None:
    cfg = _cfg(tiny_gsc, tmp_path / "r", init="supernet", train_epochs=1, frontend="raw", split=split)
    out = run_pipeline(cfg, ["search"])
    assert out["search"].get("split", "none") == split
    if split != "none":  # one supernet per front end, each with its own checkpoint
        assert all((Path(cfg.out) / "search" / f"frontend-{v}" / "checkpoints" / "last.ckpt").is_file()
                   for v in ("sinc", "conv"))
    weights = torch.load(Path(cfg.out) / "search" / "init_weights.pt")
    pipe = pipeline.Pipeline(cfg)
    model = pipe._initial_model(out["search"]["arch"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert stage_done(cfg.out, "search")["arch"] == out["search"]["arch"]


def test_space_classes_come_from_the_options_and_the_data_must_agree(tiny_gsc: Path, tmp_path: Path) -> None:
    """The space is built from the options alone (no data is loaded for it); data with other classes is refused."""
    dm = SpeechCommandsDataModule(tiny_gsc)  # the 10 Speech Commands keywords: 12 classes
    pipe = pipeline.Pipeline(PipelineConfig(out=str(tmp_path / "r"), preset="tiny", keywords="yes,no"), data_module=dm)
    assert pipe.space()(torch.zeros(1, 1, 16000)).shape == (1, 4)  # yes, no, _silence_, _unknown_
    with pytest.raises(ValueError, match=r"classes \(yes, no, up.*are not the 4 .*\(yes, no, _silence_, _unknown_\)"):
        pipe.data_module
    agreeing = pipeline.Pipeline(_cfg(tiny_gsc, tmp_path / "s"), data_module=dm)
    assert agreeing.data_module is dm and agreeing.space()(torch.zeros(1, 1, 16000)).shape == (1, dm.num_classes)


def test_identity_options_cannot_change_in_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(PipelineConfig(preset="tiny").to_json()))
    assert load_config(tmp_path, {}).preset == "tiny"
    assert load_config(tmp_path, {"train_epochs": 3}).train_epochs == 3
    with pytest.raises(ValueError, match="preset"):
        load_config(tmp_path, {"preset": "small"})


def test_sweep_over_lambda_and_front_ends(tiny_gsc: Path, tmp_path: Path, count_accuracy, tiny_test_clips) -> None:
    # One budget for both front ends must be feasible in both: the tiny MFCC space costs more MACs (feature
    # extraction counted) than the raw one. The 'add' form keeps pushing below the budget, so λ matters in both.
    budget = max(_feasible_macs("raw", 0.3), _feasible_macs("mfcc", 0.3))
    # DARTS' mixture: its unpenalised choice is not the cheapest here (1 epoch on tiny data), so λ shows
    cfg = _cfg(tiny_gsc, tmp_path / "sweep", max_macs=budget, penalty_form="add", strategy="darts")
    sweep = run_sweep(cfg, SweepPlan(knob="lam", values=[0.0, 10.0], frontends=["raw", "mfcc"]))
    assert len(sweep["points"]) == 4
    assert {p["frontend"] for p in sweep["points"]} == {"raw", "mfcc"}
    for p in sweep["points"]:
        assert p["costs"]["macs"] > 0 and "macs" in p["pareto"]
        trained = load_trained_model(Path(p["dir"]) / "train")  # its arch.json names the space (MFCC or raw)
        assert p["test_acc"] == pytest.approx(count_accuracy(trained, tiny_test_clips))
    for frontend in ("raw", "mfcc"):
        points = {p["lam"]: p for p in sweep["points"] if p["frontend"] == frontend}
        expected = {lam: stage_done(p["dir"], "search")["history"][-1]["expected"]["macs"] for lam, p in points.items()}
        assert expected[10.0] < expected[0.0], (frontend, expected)  # the penalty lowers the expected cost
        assert points[10.0]["costs"]["macs"] <= budget
    # λ = 10 buys a cheaper architecture (in the MFCC space the body is a few % of the MACs, its choices
    # move the total too little for one epoch to tell)
    raw = {p["lam"]: p["costs"]["macs"] for p in sweep["points"] if p["frontend"] == "raw"}
    assert raw[10.0] < raw[0.0], raw
    assert any(p["pareto"]["macs"] for p in sweep["points"] if p["frontend"] == "mfcc")
    saved = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert saved["knob"] == "lam" and len(saved["points"]) == 4
    md = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "Front end `raw`" in md and "Front end `mfcc`" in md and "★" in md
    assert (tmp_path / "sweep" / "pareto.png").stat().st_size > 1000
    # resuming a finished sweep redoes nothing
    plan = SweepPlan(knob="lam", values=[0.0, 10.0], frontends=["raw", "mfcc"])
    again = run_sweep(cfg, plan, resume=True)
    assert [p["test_acc"] for p in again["points"]] == [p["test_acc"] for p in sweep["points"]]
    # resuming with another strategy is refused, and the records still describe the points; λ weighs nothing in a
    # strategy without an architecture step
    before = (tmp_path / "sweep" / "config.json").read_text()
    with pytest.raises(ValueError, match="strategy='darts', not 'gumbel'"):
        run_sweep(dataclasses.replace(cfg, strategy="gumbel"), plan, resume=True)
    with pytest.raises(ValueError, match="λ sweep needs a strategy with an architecture step"):
        run_sweep(dataclasses.replace(cfg, strategy="sandwich"), plan, resume=True)
    assert (tmp_path / "sweep" / "config.json").read_text() == before


def _feasible_macs(frontend: str, fraction: float) -> float:
    """A MAC budget ``fraction`` of the way from the cheapest to the dearest tiny architecture (cost model)."""
    from nni_kws.cost import CostModel
    from nni_kws.space import build_space

    model = CostModel(build_space("tiny", frontend=frontend))
    lo, hi = (model.exact({label: values[i] for label, values in model.choices.items()})["macs"] for i in (0, -1))
    return lo + fraction * (hi - lo)


def test_pareto_front() -> None:
    pts = [{"costs": {"macs": 1}, "test_acc": 0.5}, {"costs": {"macs": 2}, "test_acc": 0.4},
           {"costs": {"macs": 3}, "test_acc": 0.9}, {"costs": {"macs": 3}, "test_acc": 0.8},
           {"costs": {"macs": 5}, "test_acc": None}]
    assert pareto_front(pts, "macs") == [0, 2]


def test_describe_arch_lists_active_blocks() -> None:
    from nni_kws.space import describe_arch as arch_summary

    arch = {"frontend": "sinc", "s0_i0_k": 3, "s0_i0_e": 1, "s1_depth": 1, "s1_i0_k": 5, "s1_i0_e": 2, "s1_i1_k": 7,
            "s1_i1_e": 4, "other": 1}
    assert arch_summary(arch) == [("front end", "sinc"), ("stage 0", "1 block: k3 e1"), ("stage 1", "1 block: k5 e2"),
                                  ("`other`", "1")]
    assert arch_summary({"s0_depth": 2, "s0_i0": "k3e1", "s0_i1": "k5e2"}) == [("stage 0", "2 blocks: k3e1, k5e2")]


def test_report_renders_from_results_alone(tmp_path: Path) -> None:
    points = [{"name": "retrained (float)", "kind": "retrained", "test_acc": 0.9, "real_test_acc": None,
               "costs": {"macs": 1e6, "params": 2e4, "weight_kb": 80.0, "latency_ms": 1.2}},
              {"name": "quantized", "kind": "quantized", "test_acc": 0.88, "bits_weight": 3.1, "bits_act": 4.0,
               "costs": {"macs": 1e6, "params": 2e4, "weight_kb": 8.0, "latency_ms": 1.2}}]
    md = render_report({"config": {"preset": "small"}, "points": points, "arch": {"s0_i0_k": 3},
                        "timings_s": {"search": 1.0}})
    assert "| quantized | 88.00 | – |" in md and "3.10 / 4.00" in md and "s0_i0_k" in md
    png = plot_pareto(points, tmp_path / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    sweep_md = render_sweep({"knob": "lam", "values": [0], "frontends": ["raw"], "points": [
        {"frontend": "raw", "lam": 0, **points[0]}]})
    assert "| 0 |" in sweep_md and "★" in sweep_md and "quantized" not in sweep_md
    # sweep --quantize: each point's quantized accuracy and bits in extra columns, one cell per header
    quant = {"test_acc": 0.875, "real_test_acc": None, "bits_weight": 3.5, "bits_act": 4.0}
    sweep_md = render_sweep({"knob": "lam", "values": [0, 1], "frontends": ["raw"], "points": [
        {"frontend": "raw", "lam": 0, **points[0], "quant": quant}, {"frontend": "raw", "lam": 1, **points[0]}]})
    table = [line for line in sweep_md.splitlines() if line.startswith("|")]
    assert "quantized synth test [%]" in table[0] and "| 87.50 | – | 3.50 / 4.00 |" in table[2]
    assert len({line.count("|") for line in table}) == 1
