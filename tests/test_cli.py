"""``nni-kws run/search/train`` end to end through ``nni_kws.cli.main`` on the tiny dataset.

Each test runs real (1-epoch, 'tiny' preset) search, retraining and quantization; no mocks.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import onnxruntime
import pytest
import torch

from nni_kws.cli import main
from nni_kws.cost.budgets import KB
from nni_kws.data.audio import load_clip
from nni_kws.data.labels import CLASSES
from nni_kws.space import load_trained_model, save_arch

# the space of CostModel("tiny"), which the budget tests compare with
COMMON = ["--preset", "tiny", "--frontend", "raw", "--batch-size", "16", "--no-progress"]
FAST = [*COMMON, "--search-epochs", "1", "--train-epochs", "1", "--finalist-epochs", "1"]
QUANT = ["--quant-epochs", "1"]


@pytest.fixture(scope="module")
def tiny_real(tiny_gsc: Path, tmp_path_factory) -> Path:
    """A miniature stand-in for the real v2 test folder: one folder per class, from tiny_gsc's test clips."""
    root = tmp_path_factory.mktemp("tiny_real")
    lines = (tiny_gsc / "testing_list.txt").read_text().split()
    for name in CLASSES:
        (root / name).mkdir()
    for rel in lines:
        word = rel.split("/")[0]
        cls = word if word in CLASSES else "_unknown_"
        shutil.copy(tiny_gsc / rel, root / cls / rel.replace("/", "_"))
    noise = sorted((tiny_gsc / "_background_noise_").glob("*.wav"))[0]
    import soundfile as sf

    audio, sr = sf.read(noise, dtype="float32")
    sf.write(root / "_silence_" / "0.wav", audio[:sr], sr, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def finished_run(tiny_gsc: Path, tiny_real: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "demo"
    rc = main(["run", "--data", str(tiny_gsc), "--real-test", str(tiny_real), "--out", str(out),
               "--max-macs", "3.5e5", "--allow-over-budget", *FAST, *QUANT])
    assert rc == 0
    return out


def test_run_writes_results_report_and_plot(finished_run: Path, tiny_real: Path, count_accuracy,
                                            tiny_test_clips) -> None:
    res = json.loads((finished_run / "results.json").read_text())
    assert set(res["timings_s"]) >= {"search", "train", "quantize", "report", "total"}
    assert all(v is None or v >= 0 for v in res["timings_s"].values())
    assert res["config"]["preset"] == "tiny" and res["config"]["max_macs"] == 3.5e5
    assert res["data"]["n_test"] > 0 and res["data"]["n_real_test"] > 0
    kinds = [p["kind"] for p in res["points"]]
    assert kinds == ["searched", "retrained", "quantized"]
    for p in res["points"]:
        assert p["costs"]["macs"] > 0 and p["costs"]["params"] > 0
    retrained, quantized = res["points"][1], res["points"][2]
    # the reported accuracies agree with clip-by-clip counts of the saved models (the float model.pt in torch,
    # the exported QDQ model under onnxruntime: one clip may round the other way)
    float_model = load_trained_model(finished_run / "train")
    session = onnxruntime.InferenceSession(str(finished_run / "quantize" / "model_qdq.onnx"))
    clips = [(load_clip(wav), CLASSES.index(wav.parent.name)) for wav in sorted(tiny_real.glob("*/*.wav"))]
    name = session.get_inputs()[0].name
    onnx_hits = sum(int(session.run(None, {name: x[None].numpy()})[0].argmax(1)[0]) == y for x, y in clips)
    assert retrained["real_test_acc"] == pytest.approx(count_accuracy(float_model, clips))
    assert retrained["test_acc"] == pytest.approx(count_accuracy(float_model, tiny_test_clips))
    assert abs(quantized["real_test_acc"] * len(clips) - onnx_hits) <= 1
    assert quantized["bits_weight"] is not None and 0 < quantized["bits_weight"] <= 32
    assert quantized["costs"]["weight_kb"] < retrained["costs"]["weight_kb"]
    # the quantized point's memory is the quantized model's: its packed weights, and at the peak (the front end of
    # 'tiny', test_cost) its 16-bit PCM waveform and front-end output at the widest activation bits
    costs, qreport = quantized["costs"], res["quant_report"]
    assert costs["weight_bytes"] == qreport["size_bytes"] == pytest.approx(costs["weight_kb"] * KB)
    widest = max(layer["act_bits"] for layer in qreport["layers"] if layer.get("act_bits"))
    front_end_output = retrained["costs"]["peak_activation_bytes"] / 4 - 16000
    assert qreport["model_input_bits"] is None and widest < 32
    assert costs["peak_activation_bytes"] == math.ceil(2 * 16000 + front_end_output * widest / 8)
    assert res["arch"] == json.loads((finished_run / "search" / "arch.json").read_text())["arch"]
    report = (finished_run / "report.md").read_text()
    assert "| retrained (float) |" in report and "## Architecture" in report and "pareto.png" in report
    assert (finished_run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the quantization benchmark's accuracy-bits curve, with this run's bits named next to it
    assert "## Accuracy against bits" in report and f"{res['quant']['bits_weight']:.2f} bits per weight" in report
    assert (finished_run / "quantize_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (finished_run / "train" / "model.pt").is_file()
    last = finished_run / "train" / "checkpoints" / "last.ckpt"
    # the Lightning checkpoint reads back as the saved model (nni-kws quantize accepts either)
    saved, resumed = load_trained_model(finished_run / "train").state_dict(), load_trained_model(last).state_dict()
    assert saved.keys() == resumed.keys() and all(torch.equal(saved[k], resumed[k]) for k in saved)


def test_run_again_without_resume_is_refused(finished_run: Path, tiny_gsc: Path, capsys) -> None:
    rc = main(["run", "--data", str(tiny_gsc), "--out", str(finished_run), *FAST])
    assert rc == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_skips_completed_stages(tiny_gsc: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # "interrupted" after the search stage: only search has run
    assert main(["search", "--data", str(tiny_gsc), "--no-real-test", "--out", str(out), *COMMON,
                 "--search-epochs", "1"]) == 0
    searched = (out / "search" / "result.json").read_text()
    stamp = (out / "search" / "result.json").stat().st_mtime_ns
    # --resume needs no other option: they come from <out>/config.json
    assert main(["run", "--out", str(out), "--resume", "--quant-epochs", "1", "--train-epochs", "1"]) == 0
    assert (out / "search" / "result.json").stat().st_mtime_ns == stamp
    assert (out / "search" / "result.json").read_text() == searched
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["preset"] == "tiny" and res["data"]["real_test_root"] is None
    assert [p["kind"] for p in res["points"]] == ["searched", "retrained", "quantized"]
    assert res["points"][1]["real_test_acc"] is None


def test_train_with_bad_arch_names_the_label(tiny_gsc: Path, tmp_path: Path, capsys) -> None:
    from nni_kws.space import build_space, random_arch

    arch = random_arch(build_space("tiny"), seed=0)
    arch["s1_i0_k"] = 4  # not a candidate kernel size
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"arch": arch, "preset": "tiny"}))
    rc = main(["train", "--arch", str(bad), "--data", str(tiny_gsc), "--out", str(tmp_path / "t"), *COMMON])
    err = capsys.readouterr().err
    assert rc == 2
    assert "s1_i0_k" in err and "bad.json" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("coarse", [False, True])  # coarse: the whole-block space a proxyless search writes
def test_train_with_arch_file(tiny_gsc: Path, tmp_path: Path, count_accuracy, tiny_test_clips, coarse: bool) -> None:
    from nni_kws.space import build_space, random_arch, save_arch

    path = save_arch(random_arch(build_space("tiny", coarse=coarse), seed=1), tmp_path / "a.json", preset="tiny",
                     coarse=coarse)
    out = tmp_path / "t"
    assert main(["train", "--arch", str(path), "--data", str(tiny_gsc), "--no-real-test", "--out", str(out),
                 "--train-epochs", "1", "--batch-size", "16", "--no-progress"]) == 0
    res = json.loads((out / "train" / "result.json").read_text())
    assert res["arch"] == json.loads(path.read_text())["arch"]
    assert res["test_acc"] == pytest.approx(count_accuracy(load_trained_model(out / "train"), tiny_test_clips))


def test_train_a_searched_architecture_by_name(tiny_gsc: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    from nni_kws.space import SEARCHED

    out = tmp_path / "t"
    assert main(["train", "--arch", "compact-3.3m", "--data", str(tiny_gsc), "--no-real-test", "--out", str(out),
                 "--train-epochs", "1", "--batch-size", "16", "--no-progress"]) == 0
    res = json.loads((out / "train" / "result.json").read_text())
    assert res["arch"] == dict(SEARCHED["compact-3.3m"].arch)
    # the parameter count of the benchmark's record (search_quality.json): built in its own space, 'compact'
    assert sum(p.numel() for p in load_trained_model(out / "train").parameters()) == 31972
    assert main(["train", "--arch", "compact-9m", "--data", str(tiny_gsc), "--out", str(tmp_path / "u")]) == 2
    assert "nor the name of a searched architecture: compact-3.3m" in capsys.readouterr().err
    # in a run of another space: said so, naming both, and nothing written
    assert main(["train", "--arch", "compact-3.3m", "--preset", "tiny", "--data", str(tiny_gsc),
                 "--out", str(tmp_path / "v")]) == 2
    assert "compact-3.3m is an architecture of another space (preset compact) than this run's (preset tiny" in \
        capsys.readouterr().err
    assert not (tmp_path / "v").exists()
    # ... and for an arch.json, the file and its space named once
    arch_file = save_arch(dict(SEARCHED["compact-3.3m"].arch), tmp_path / "arch.json", preset="compact")
    assert main(["train", "--arch", str(arch_file), "--preset", "tiny", "--data", str(tiny_gsc),
                 "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert f"{arch_file} is an architecture of another space (preset compact)" in err
    assert err.count(str(arch_file)) == 1 and err.count("compact") == 1, err
    # ... before any data is made: on the default (synthesized) data, none is synthesized first
    monkeypatch.setenv("NNI_KWS_DATA", str(tmp_path / "synth"))
    assert main(["train", "--arch", str(arch_file), "--preset", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert f"{arch_file} is an architecture of another space" in capsys.readouterr().err
    assert not (tmp_path / "synth").exists() and not (tmp_path / "x").exists()


def test_a_searched_architecture_of_an_mfcc_space_trains_with_its_front_end(tiny_gsc: Path, tmp_path: Path) -> None:
    from nni_kws.space.blocks import MfccFrontEnd

    out = tmp_path / "m"
    assert main(["train", "--arch", "onestride-mfcc-3.5m", "--data", str(tiny_gsc), "--no-real-test", "--out",
                 str(out), "--train-epochs", "1", "--batch-size", "16", "--no-progress"]) == 0
    model = load_trained_model(out / "train")
    assert isinstance(model.frontend, MfccFrontEnd)
    # the parameter count of the benchmark's record (search_quality_onestride_mfcc.json)
    assert sum(p.numel() for p in model.parameters()) == 56516


def test_missing_data_folder_is_named(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-such-gsc"
    rc = main(["run", "--data", str(missing), "--out", str(tmp_path / "r"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(missing) in err and "not found" in err


@pytest.mark.parametrize("case", ["speakers", "layout", "keywords", "lists", "test-set", "folds"])
def test_data_options_that_cannot_apply_are_refused_before_anything_runs(case: str, tiny_gsc: Path, tiny_real: Path,
                                                                         tmp_path: Path, capsys) -> None:
    """Options the run's data cannot honour: one line naming them, before any folder is written."""
    same_list = tmp_path / "list.txt"
    same_list.write_text((tiny_gsc / "testing_list.txt").read_text())
    args, message = {
        "speakers": (["--data", str(tiny_gsc), "--speakers", "5"], "--speakers shape(s) the synthesized dataset"),
        "layout": (["--data", str(tiny_gsc), "--real-test", str(tiny_gsc)], "lacks class folders"),
        "keywords": (["--keywords", "yes,no", "--real-test", str(tiny_real)], "classes are the keywords yes, no"),
        "lists": (["--data", str(tiny_gsc), "--train-list", str(same_list), "--test-list", str(same_list)],
                  f"shares {len(same_list.read_text().split())} clips with --train-list"),
        "test-set": (["--data", str(tiny_real)], "is a pre-split test set (class folders, no split lists)"),
        "folds": (["--data", str(tiny_gsc), "--finalist-folds"], "--finalist-folds needs finalists and list-defined"),
    }[case]
    out = tmp_path / "run"
    assert main(["run", *args, "--out", str(out), *FAST]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_data_check_recognises_a_pre_split_test_set(tiny_real: Path, capsys) -> None:
    """The real test set's layout (class folders, no lists) is checked as such, every clip counted, and named as
    usable where it is, instead of failing as a training set without lists or noise."""
    assert main(["data", "check", str(tiny_real), "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == "pre-split test set" and report["ok"]
    assert report["clips"] == len(list(tiny_real.glob("*/*.wav"))) and set(report["classes"]) == set(CLASSES)
    assert "--real-test" in report["usable_as"]


def test_real_test_follows_the_datas_own_keywords(tmp_path: Path, monkeypatch) -> None:
    """The automatic real test (12 Speech Commands classes) is skipped for data of other keywords, a synthesized
    folder given as --data included, and kept for --keywords naming the 10 Speech Commands keywords."""
    from nni_kws.data.labels import KEYWORDS, MANIFEST
    from nni_kws.pipeline import PipelineConfig, make_data_module

    shared = tmp_path / "shared"
    (shared / "gsc-v2-test").mkdir(parents=True)
    monkeypatch.setenv("NNI_KWS_SHARED_DATA", str(shared))
    data = tmp_path / "wake"
    data.mkdir()
    (data / MANIFEST).write_text(json.dumps({"keywords": ["marvin", "sheila"]}))
    assert make_data_module(PipelineConfig(data=str(data))).real_test_root is None
    monkeypatch.setattr("nni_kws.pipeline.data.ensure_default_dataset", lambda **kw: data)  # no synthesis here
    cfg = PipelineConfig(keywords=",".join(KEYWORDS))
    assert make_data_module(cfg).real_test_root == shared / "gsc-v2-test"


def test_train_without_search_says_what_to_do(tiny_gsc: Path, tmp_path: Path, capsys) -> None:
    rc = main(["train", "--data", str(tiny_gsc), "--out", str(tmp_path / "r"), *COMMON])
    assert rc == 2
    assert "nni-kws search" in capsys.readouterr().err


def test_infeasible_budget_is_refused_before_anything_runs(tiny_gsc: Path, tmp_path: Path, capsys) -> None:
    """A budget below the cheapest architecture of the space: one line naming the cheapest value, nothing written."""
    from nni_kws.cost import CostModel

    cheapest = CostModel("tiny").cheapest("macs")[1]
    out = tmp_path / "run"
    rc = main(["search", "--data", str(tiny_gsc), "--out", str(out), "--max-macs", "1000", *COMMON])
    assert rc == 2
    err = capsys.readouterr().err
    assert "below the cheapest architecture" in err and f"{cheapest:,.0f}" in err
    assert not out.exists()


def test_proxyless_budgets_and_latency_table_are_those_of_the_coarse_space(tiny_gsc: Path, tmp_path: Path,
                                                                             capsys) -> None:
    """Proxyless searches the coarse space (whole blocks), whose cheapest architecture is smaller than the fine
    space's: a budget between the two is feasible and met; a latency table of the fine space lacks its blocks and
    is refused, naming the profile command that makes the right one."""
    from nni_kws.cost import CostModel
    from nni_kws.space import build_space

    coarse = CostModel(build_space("tiny", frontend="raw", coarse=True))
    budget = CostModel(build_space("tiny", frontend="raw")).cheapest("params")[1] - 1
    assert coarse.cheapest("params")[1] <= budget
    out = tmp_path / "run"
    assert main(["search", "--data", str(tiny_gsc), "--out", str(out), "--strategy", "proxyless",
                 "--max-params", str(budget), *COMMON, "--search-epochs", "1"]) == 0
    assert coarse.exact(json.loads((out / "search" / "result.json").read_text())["arch"])["params"] <= budget
    lut = tmp_path / "fine.json"
    assert main(["profile", "--preset", "tiny", "--frontend", "raw", "--repeats", "2", "--rounds", "1",
                 "--calibration", "1", "--out", str(lut)]) == 0
    capsys.readouterr()
    assert main(["search", "--data", str(tiny_gsc), "--out", str(tmp_path / "r2"), "--strategy", "proxyless",
                 "--latency-lut", str(lut), *COMMON, "--search-epochs", "1"]) == 2
    assert "nni-kws profile --preset tiny --frontend raw --coarse" in capsys.readouterr().err


def test_search_takes_the_weights_learning_rate(tiny_gsc: Path, tmp_path: Path) -> None:
    """``nni-kws search --lr``: each supernet's optimizer starts its cosine schedule at that rate (checkpoints)."""
    out = tmp_path / "run"
    assert main(["search", "--data", str(tiny_gsc), "--no-real-test", "--out", str(out), "--lr", "0.07",
                 "--finalists", "0", *COMMON, "--search-epochs", "1"]) == 0
    checkpoints = sorted((out / "search").glob("**/last.ckpt"))  # one supernet per front end here
    rates = [g["initial_lr"] for path in checkpoints
             for state in torch.load(path, map_location="cpu", weights_only=False)["optimizer_states"]
             for g in state["param_groups"]]
    assert checkpoints and rates == [0.07] * len(checkpoints)


def test_search_lands_within_a_tight_budget(tiny_gsc: Path, tmp_path: Path) -> None:
    """λ = 0 ignores the cost in the architecture loss, but the budget still binds: the derived architecture is
    moved within it (checked against the cost model), and the argmax that was over it is kept in the record."""
    from nni_kws.cost import CostModel

    cm = CostModel("tiny")
    budget = cm.cheapest("macs")[1] + 1
    out = tmp_path / "run"
    assert main(["search", "--data", str(tiny_gsc), "--out", str(out), "--max-macs", str(budget), "--lambda", "0",
                 *COMMON, "--search-epochs", "1"]) == 0
    searched = json.loads((out / "search" / "result.json").read_text())
    assert cm.exact(searched["arch"])["macs"] <= budget and searched["over_budget"] == {}
    over = searched.get("argmax_over_budget")
    assert over is None or cm.exact(over["arch"])["macs"] > budget


def test_over_budget_search_is_flagged_and_stops_the_run(tiny_gsc: Path, tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    """When the search cannot bring its architecture within a budget (here: the projection into the budget is
    switched off, as when a greedy step finds no way down), the run stops with exit status 3 after recording
    ``over_budget`` in result.json (checked against the cost model); ``--resume --allow-over-budget``
    finishes it and the report says OVER BUDGET."""
    import nni_kws.search.oneshot as oneshot
    from nni_kws.cost import CostModel
    from nni_kws.search.strategy import argmax_arch

    monkeypatch.setattr(oneshot, "most_likely_within", lambda probs, costs_of, limits: argmax_arch(probs))
    cm = CostModel("tiny")
    budget = cm.cheapest("macs")[1] + 1
    out = tmp_path / "run"
    rc = main(["run", "--data", str(tiny_gsc), "--no-real-test", "--out", str(out), "--max-macs", str(budget),
               "--lambda", "0", "--strategy", "gumbel-hard", *FAST, *QUANT])
    searched = json.loads((out / "search" / "result.json").read_text())
    macs = cm.exact(searched["arch"])["macs"]
    assert macs > budget, "the test needs a search that ends over the budget"
    assert rc == 3 and "over budget" in capsys.readouterr().err
    assert searched["over_budget"] == {"macs": {"limit": budget, "value": macs}}
    assert not (out / "train").exists()
    assert main(["run", "--out", str(out), "--resume", "--allow-over-budget"]) == 0
    assert "OVER BUDGET" in (out / "report.md").read_text()


def test_list_defined_protocol_tests_on_the_test_list(tiny_gsc: Path, tmp_path: Path) -> None:
    """``--train-list/--test-list`` over a folder: trains on one list (validating on held-apart speakers), tests
    on the other, never reports a whole real test set, and the report names the test list."""
    (train, train_rels), (test, test_rels) = _lists(tiny_gsc, tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_gsc), "--train-list", str(train), "--test-list", str(test),
                 "--out", str(out), "--arch", str(_arch_file(tmp_path)), *COMMON, "--train-epochs", "1"]) == 0
    res = json.loads((out / "train" / "result.json").read_text())
    assert res["data"]["n_test"] == len(test_rels) and res["data"]["real_test_root"] is None
    assert res["data"]["n_train"] + res["data"]["n_val"] == len(train_rels)
    assert res["real_test_acc"] is None
    # quantize, given only the model, fine-tunes and tests on the same folder and lists
    assert main(["quantize", str(out / "train"), "--bits", "4", "--epochs", "1", "--batch-size", "16",
                 "--out", str(tmp_path / "q"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "q" / "quant_report.json").read_text())
    assert report["onnx"]["checked_on"] == "test" and report["onnx"]["clips"] == len(test_rels)
    assert report["accuracy"]["test"]["before"] == pytest.approx(res["test_acc"])
    assert main(["quantize", str(out / "train"), "--test-list", str(test)]) == 2  # the lists go together


def test_finalists_validate_on_folds_of_the_training_list(tiny_gsc: Path, tmp_path: Path) -> None:
    """``--finalist-folds``: training i of each finalist holds apart fold i of the training list's speakers; the
    sizes of the validation sets it used match the folds counted from the list (speakers of 26, 26, 13 clips)."""
    from nni_kws.data.listed import speaker_split

    (train, rels), (test, _) = _lists(tiny_gsc, tmp_path)
    out = tmp_path / "run"
    assert main(["search", "--data", str(tiny_gsc), "--train-list", str(train), "--test-list", str(test),
                 "--out", str(out), *COMMON, "--search-epochs", "1", "--finalist-epochs", "1", "--finalists", "1",
                 "--finalist-seeds", "3", "--finalist-folds"]) == 0
    rows = json.loads((out / "search" / "result.json").read_text())["evolution"]["finalists"]
    fold_sizes = [len(speaker_split(rels, 0.1, fold=i)[1]) for i in range(3)]
    assert sorted(fold_sizes) == [13, 26, 26]
    assert rows and all(row["val_clips"] == fold_sizes and len(row["val_accs"]) == 3 for row in rows)


def _lists(tiny_gsc: Path, tmp_path: Path) -> tuple[tuple[Path, list[str]], tuple[Path, list[str]]]:
    """``(train.txt, its clips), (test.txt, its clips)`` over tiny_gsc: its test list, and every other keyword or
    unknown-word clip."""
    test_rels = (tiny_gsc / "testing_list.txt").read_text().split()
    train_rels = sorted(str(p.relative_to(tiny_gsc)) for p in tiny_gsc.glob("*/*_nohash_*.wav")
                        if not p.parent.name.startswith("_") and str(p.relative_to(tiny_gsc)) not in test_rels)
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("\n".join(train_rels) + "\n")
    test.write_text("\n".join(test_rels) + "\n")
    return (train, train_rels), (test, test_rels)


def _arch_file(tmp_path: Path) -> Path:
    from nni_kws.space import build_space, random_arch, save_arch

    return save_arch(random_arch(build_space("tiny"), seed=0), tmp_path / "arch.json", preset="tiny")


def test_run_for_custom_keywords(tmp_path: Path, monkeypatch, tiny_gsc: Path, capsys) -> None:
    """``--keywords`` synthesizes a dataset of the user's own keywords (a phrase included) and the whole job
    builds, trains and quantizes a classifier with exactly those classes plus _silence_ and _unknown_."""

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NNI_KWS_DATA", raising=False)
    out = tmp_path / "run"
    assert main(["run", "--keywords", "marvin,lights on", "--synth", "today", "--speakers", "4", "--out", str(out),
                 "--max-per-class", "6", "--allow-over-budget", *FAST, *QUANT]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["real_test_root"] is None and res["config"]["keywords"] == "marvin,lights on"
    state = torch.load(out / "train" / "model.pt", map_location="cpu", weights_only=True)
    assert state["classifier.weight"].shape[0] == 4
    with torch.no_grad():  # read back as `nni-kws quantize --model` does: arch.json names the classes too
        assert load_trained_model(out / "train").eval()(torch.randn(1, 1, 16000)).shape == (1, 4)
    # quantizing it on 12-class data is refused, naming both counts and the data it was trained on
    assert main(["quantize", str(out / "train"), "--data", str(tiny_gsc), "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "has 4 outputs but the data" in err and "12 classes" in err and "it was trained on" in err
    manifest = json.loads(next((tmp_path / "home" / ".cache" / "nni-kws").glob("synth-*/manifest.json")).read_text())
    assert manifest["keywords"] == ["marvin", "lights on"]
