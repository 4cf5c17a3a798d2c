"""Accuracy against average bits, learned bit-widths vs NNI's fixed QAT/LSQ, from ``benchmarks/quantize.py``'s JSON."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

__all__ = ["plot_quantize_curve"]

_STYLE = {"learned": ("C0", "o", "learned bit-widths"),
          "learned_sens": ("C3", "D", "learned, sensitivity-allocated start"),  # results before 'learned' was it
          "learned_budget": ("C4", "v", "learned, uniform start"),
          "learned_fast": ("C5", "P", "learned, weight lr 3e-3"), "lsq": ("C1", "s", "NNI LSQ (fixed)"),
          "qat": ("C2", "^", "NNI QAT (fixed)")}


def _points(runs: list[dict[str, Any]], method: str, axis: str) -> list[tuple[float, float]]:
    """``(mean average bits, mean heldout accuracy)`` per bit setting of ``method``, over its runs (seeds)."""
    by_bits: dict[float, list[dict[str, Any]]] = {}
    for r in runs:
        if r["method"] == method and "diverged" not in r:
            by_bits.setdefault(r["bits"], []).append(r)
    return sorted((statistics.fmean(r[f"avg_bits_per_{axis}"] for r in rs),
                   statistics.fmean(100 * r["accuracy"]["heldout"] for r in rs)) for rs in by_bits.values())


def _verdict_variants(runs: list[dict[str, Any]], chosen: dict[str, str]) -> list[dict[str, Any]]:
    """``runs`` with the learned variant the verdict chose at each budget (``learned_variant_per_budget``) as its
    'learned' rows, so that the curve shows what the verdict counts."""
    def variant(bits: float) -> str:
        return chosen.get(str(bits), "learned")

    return [{**r, "method": "learned"} if r["method"] == variant(r["bits"]) else r for r in runs
            if r["method"] != "learned" or variant(r["bits"]) == "learned"]


def plot_quantize_curve(json_path: str | Path, png_path: str | Path) -> Path:
    """Write a PNG with heldout accuracy against average bits per weight (left) and per activation
    (right), one line per method (learned: the verdict's variant at each budget), the float model as a dashed
    line (its fine-tuned control, when run, dotted); returns ``png_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(json_path)
    if not path.is_file():
        raise FileNotFoundError(f"quantize benchmark results not found: {path}")
    data = json.loads(path.read_text())
    runs = data.get("runs")
    if not runs:
        raise ValueError(f"{path}: no 'runs' (run benchmarks/quantize.py first)")
    runs = _verdict_variants(runs, data.get("verdict", {}).get("learned_variant_per_budget", {}))
    float_acc = 100 * data["float"]["accuracy"]["heldout"]
    control = [100 * r["accuracy"]["heldout"] for r in runs if r["method"] == "float"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, axis in zip(axes, ("weight", "activation")):
        for method, (color, marker, label) in _STYLE.items():
            pts = _points(runs, method, axis)
            if pts:
                ax.plot(*zip(*pts), color=color, marker=marker, label=label)
        ax.axhline(float_acc, color="k", linestyle="--", linewidth=1, label="float")
        if control:  # the float model given the quantizers' fine-tuning (the benchmark's 'float' rows)
            ax.axhline(statistics.fmean(control), color="k", linestyle=":", linewidth=1,
                       label="float, same fine-tuning")
        ax.set_xlabel(f"average bits per {axis}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("heldout accuracy (%)")
    axes[0].legend(loc="lower right")
    fig.suptitle("Quantization on real speech (dev -> heldout): accuracy vs average bits")
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path
