"""``results.json`` of a run: the stages' ``result.json`` records gathered in one file, then rendered
into ``report.md`` and ``pareto.png`` by :mod:`nni_kws.report`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import torch

from nni_kws.cost.budgets import with_kb
from nni_kws.files import write_json
from nni_kws.quant import plot_quantize_curve
from nni_kws.quant.report import PCM_BITS
from nni_kws.report import write_report

from .config import PipelineConfig

__all__ = ["QUANTIZE_JSON", "device_name", "memory_bits", "quant_summary", "assemble_results"]

_REPO = Path(__file__).resolve().parents[2]
#: Results of ``benchmarks/quantize.py``: the learned-vs-fixed accuracy-bits curve shown in every run report.
QUANTIZE_JSON = _REPO / "benchmarks" / "results" / "quantize.json"

# stage -> (point kind, row name) of the accuracy-cost points
_POINTS = (("search", "searched", "searched (supernet weights)"), ("train", "retrained", "retrained (float)"),
           ("quantize", "quantized", "quantized"))


def device_name() -> str:
    """The device the run used, for the records."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"


def memory_bits(report: Mapping[str, Any]) -> dict[str, int]:
    """The widths a quantized model's peak activation memory is costed at: its widest activation bit-width
    (``act_bits``; 32 where none is quantized) and its waveform's (``input_bits``: the quantized width, else the
    microphone's 16-bit PCM, which the quantizer leaves unquantized by default)."""
    wave = report.get("model_input_bits")
    return {"act_bits": max((layer["act_bits"] for layer in report.get("layers", []) if layer.get("act_bits")),
                            default=32),
            "input_bits": max(wave) if isinstance(wave, list) else wave or PCM_BITS}


def quant_summary(report: Mapping[str, Any], costs: Mapping[str, float]) -> dict[str, Any]:
    """The quantize stage's record from the quantizer's report (keys of :mod:`nni_kws.quant.report`); ``costs``
    are the architecture's at :func:`memory_bits`, and its weights are the quantizer's packed size."""
    after = {name: acc.get("after") for name, acc in report.get("accuracy", {}).items()}
    return {"costs": with_kb({**costs, "weight_bytes": float(report["size_bytes"])}), "report": dict(report),
            "bits_weight": report.get("avg_bits_per_weight"), "bits_act": report.get("avg_bits_per_activation"),
            "val_acc": after.get("val"), "test_acc": after.get("test"), "real_test_acc": after.get("real_test")}


def assemble_results(cfg: PipelineConfig, stages: Mapping[str, Mapping[str, Any] | None], data: Mapping[str, Any],
                     timings_included: Mapping[str, float | None], out: Path) -> dict[str, Any]:
    """Write ``results.json``, ``report.md`` and ``pareto.png`` of the completed ``stages`` into ``out``."""
    start = time.perf_counter()
    points = [{"name": name, "kind": kind, "costs": res.get("costs", {}), "test_acc": res.get("test_acc"),
               "real_test_acc": res.get("real_test_acc"), "val_acc": res.get("val_acc"),
               "bits_weight": res.get("bits_weight"), "bits_act": res.get("bits_act")}
              for stage, kind, name in _POINTS if (res := stages.get(stage))]
    searched, trained, quant = stages.get("search"), stages.get("train"), stages.get("quantize") or {}
    results = {
        "config": cfg.to_json(), "device": device_name(),
        "arch": next((res["arch"] for res in (trained, searched) if res), None), "data": dict(data),
        "search": searched and {k: v for k, v in searched.items() if k not in ("history", "data")},
        "float": trained and {k: v for k, v in trained.items() if k != "data"},
        "quant": quant and {**{k: v for k, v in quant.items() if k != "report"},
                            "layers": list(quant.get("report", {}).get("layers", []))},
        "quant_report": quant.get("report"),
        "points": points, "timings_s": {s: res["seconds"] for s, res in stages.items() if res},
        # parts of the stage times above (not added to the total): data loading/synthesis in this
        # process, measuring the latency table
        "timings_included_s": dict(timings_included),
    }
    if quant and QUANTIZE_JSON.is_file():  # where this run's bits stand on the benchmark's accuracy-bits curve
        results["quant_curve"] = plot_quantize_curve(QUANTIZE_JSON, out / "quantize_curve.png").name
        results["quant_curve_from"] = QUANTIZE_JSON.relative_to(_REPO).as_posix()
    write_report(results, out)
    results["timings_s"]["report"] = time.perf_counter() - start
    results["timings_s"]["total"] = sum(v for v in results["timings_s"].values() if v)
    write_json(out / "results.json", results)
    write_report(results, out)  # again, with the report's own time in the table
    return results
