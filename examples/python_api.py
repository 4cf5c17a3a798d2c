"""The nni-kws pipeline from Python, step by step (what ``nni-kws run`` does for you).

    .venv/bin/python examples/python_api.py            # 'small' space, synthesized data (a few minutes on CPU)
    .venv/bin/python examples/python_api.py --quick    # 'tiny' space, 1 epoch per step (seconds)

1. data: the synthesized espeak-ng dataset (or your own Speech Commands copy) + the real v2 test set;
2. a hardware-aware one-shot search (DARTS) under a MACs budget;
3. the derived architecture, saved as JSON, retrained from scratch;
4. learned bit-width quantization; 5. accuracy and costs of every step.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nni_kws.cost import CostModel
from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.data.synth import DEFAULT_PRESET, ensure_default_dataset
from nni_kws.pipeline import PipelineConfig, default_real_test_root, run_pipeline
from nni_kws.quant import quantize_model
from nni_kws.search.oneshot import run_search
from nni_kws.search.penalty import ResourcePenalty
from nni_kws.space import build_model, build_space, load_arch, save_arch
from nni_kws.training import accuracy, fit, seed_everything


def step_by_step(preset: str, epochs: int, out: Path) -> None:
    """Each stage by hand, with the library's building blocks."""
    seed_everything(0)
    data = ensure_default_dataset(preset=DEFAULT_PRESET)  # the data `nni-kws run` synthesizes by default
    dm = SpeechCommandsDataModule(data, batch_size=64, real_test_root=default_real_test_root(), cache=True)
    train, val, test = dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()

    space = build_space(preset)
    cost = CostModel(build_space(preset))
    budget = 0.5 * cost.exact(_largest(space))["macs"]  # half the MACs of the largest network
    result = run_search(space, train, val, strategy="darts", epochs=epochs, cost_model=cost, out_dir=out / "search",
                        penalties=[ResourcePenalty("macs", budget, 1.0, "hinge")])
    arch_file = save_arch(result.arch, out / "arch.json", preset=preset)
    print("searched:", json.dumps(result.arch), cost.exact(result.arch))

    arch = load_arch(arch_file, build_space(preset))  # validated against the space
    model = build_model(arch, build_space(preset))  # plain torch, fresh weights
    fit(model, train, val, epochs=epochs, out_dir=out / "train")
    print(f"float: synth test {accuracy(model, test):.3f}", end="")
    if dm.real_test_root:
        print(f", real test {accuracy(model, dm.real_test_dataloader()):.3f}", end="")
    print()

    q = quantize_model(model, train, val, method="trained", weight_budget_bits=4, act_budget_bits=4,
                       epochs=max(1, epochs // 3), out_dir=out / "quantize")
    print(f"quantized: synth test {accuracy(q.model, test):.3f} at {q.report['avg_bits_per_weight']:.2f} bits/weight, "
          f"{q.report['avg_bits_per_activation']:.2f} bits/activation; ONNX: {q.onnx_path}")


def _largest(space) -> dict:
    """The architecture with every choice at its largest value (for a relative budget)."""
    from nni_kws.space import space_choices

    return {label: max(values) if all(isinstance(v, int) for v in values) else values[0]
            for label, values in space_choices(space).items()}


def one_call(preset: str, epochs: int, out: Path) -> None:
    """The same job through the resumable pipeline (what the CLI uses)."""
    cfg = PipelineConfig(out=str(out), preset=preset, search_epochs=epochs, train_epochs=epochs,
                         quant_epochs=max(1, epochs // 3))
    results = run_pipeline(cfg, resume=True)["report"]
    for p in results["points"]:
        print(f"{p['name']:<28} test {p['test_acc']:.3f}  MACs {p['costs']['macs']:.3g}")
    print("report:", out / "report.md")


if __name__ == "__main__":
    from nni_kws.cli import quiet_libraries

    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="'tiny' space, 1 epoch per step")
    ap.add_argument("--out", default="runs/python-api")
    args = ap.parse_args()
    preset, epochs = ("tiny", 1) if args.quick else ("small", 6)
    step_by_step(preset, epochs, Path(args.out) / "steps")
    one_call(preset, epochs, Path(args.out) / "pipeline")
