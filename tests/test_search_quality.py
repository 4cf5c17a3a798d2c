"""benchmarks/search_quality.py end to end in --quick mode: verdict keys, resume after an interruption,
and the run report's Pareto plot picking up its random architectures."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from scipy.stats import kendalltau

from nni_kws.report import benchmark_points, write_report

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "search_quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("search_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_quality"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    yield module
    sys.modules.pop("search_quality", None)


@pytest.fixture(scope="module")
def quick_run(bench, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sq") / "search_quality.json"
    bench.main(["--quick", "--out", str(out)])
    return out


def test_quick_benchmark_writes_every_verdict_key(quick_run: Path) -> None:
    data = json.loads(quick_run.read_text())
    verdict = data["verdict"]
    for key in ("kendall_tau", "searched_minus_random_median_pts", "worst_margin_vs_peers_pts",
                "inherited_vs_retrained_pts"):
        assert key in verdict
    s = data["settings"]
    kinds = [m["kind"] for m in data["models"].values()]
    assert kinds.count("random") == s["random"] * len(s["budgets"])
    assert kinds.count("random-seed") == s["random"] * len(s["budgets"]) * len(s["ranking_seeds"])
    main = s["strategies"][0]
    assert kinds.count("evolution") == len(s["budgets"])
    assert kinds.count(main) == len(s["budgets"]) * (1 + len(s["retrain_seeds"]))  # retrained with every seed
    for budget in s["budgets"]:  # the sandwich search (with finalists) is within every budget
        sup = data["supernets"][f"{main}/{budget:g}/s0"]
        finalists = sup["meta"]["evolution"]["finalists"]
        assert sup["within_budget"] and not any(r.get("covers") for r in finalists[:s["finalists"]])
        assert {r["arch"]["frontend"] for r in finalists} == {"sinc", "conv"}  # --finalist-cover frontend
        assert sup["meta"]["split"] == "frontend"  # --split: one supernet per front end
    for m in data["models"].values():
        if m["kind"] in ("random", "evolution"):
            assert m["costs"]["macs"] <= m["budget_macs"]  # by construction
    # tau is computed over every random architecture, for every supernet, against its mean over training seeds
    assert all(t["n"] == len(data["ranking_archs"]) for t in verdict["kendall_tau_by_supernet"].values())
    name, sup = next(iter(data["supernets"].items()))
    keys = [json.dumps(a, sort_keys=True) for a in data["ranking_archs"]]
    accs = {k: [m["val_acc"] for m in data["models"].values() if m["kind"].startswith("random")
                and json.dumps(m["arch"], sort_keys=True) == k] for k in keys}
    assert all(len(v) == 1 + len(s["ranking_seeds"]) for v in accs.values())
    expected = kendalltau([sup["ranking_inherited_val_acc"][k] for k in keys],
                          [sum(accs[k]) / len(accs[k]) for k in keys]).statistic
    tau = verdict["kendall_tau_by_supernet"][name]["tau"]
    assert (tau is None and math.isnan(expected)) or tau == round(float(expected), 3)
    assert verdict["searched_minus_random_median_pts"] == min(
        row[s["strategies"][0]]["minus_random_median_pts"] for row in verdict["per_budget"].values())
    assert quick_run.with_suffix(".md").is_file() and quick_run.with_suffix(".png").stat().st_size > 1000
    peers = {k: m for k, m in data["models"].items() if m["kind"] == "peer"}
    assert set(peers) == {"peer/ds-cnn-s", "peer/tc-resnet8", "peer/sinc-dsconv", "peer/bc-resnet-1"}
    for m in peers.values():  # the quick space is far cheaper than any peer: each has a searched model to compare
        assert m["costs"]["macs"] > max(s["budgets"]) and m["margin_pts"] is not None
    assert verdict["worst_margin_vs_peers_pts"] == min(m["margin_pts"] for m in peers.values())
    for budget, row in verdict["per_budget"].items():  # the spread counts the architectures of the searched front end
        archs = {kind: [m["arch"] for m in data["models"].values() if m["kind"] == kind
                        and f"{m['budget_macs']:g}" == budget] for kind in ("random", main)}
        front_ends = {a["frontend"] for a in archs[main]}
        counted = {json.dumps(a, sort_keys=True) for a in archs["random"] + archs[main] if a["frontend"] in front_ends}
        spread = row["same_front_end_spread"]  # a spread needs two architectures
        assert (spread["n_architectures"] if spread else 1) == len(counted)
        same = sorted(m["heldout_acc"] for m in data["models"].values() if m["kind"] == "random"
                      and f"{m['budget_macs']:g}" == budget and m["arch"]["frontend"] in front_ends)
        assert row["random_n_same_front_end"] == len(same)
        if same:  # the margin against the random architectures of the searched front ends alone
            median = (same[(len(same) - 1) // 2] + same[len(same) // 2]) / 2
            assert row[main]["minus_same_front_end_median_pts"] == round(100 * (row[main]["heldout_mean"] - median), 2)
    models = data["models"]  # one latency per distinct network, timed in this run
    assert all(m["latency_ms"] > 0 for m in models.values())
    assert all(models[k]["latency_ms"] == models[k.rsplit("/", 1)[0]]["latency_ms"] for k in models
               if models[k]["kind"] == "peer-seed")


def test_rerun_resumes_and_only_trains_what_is_missing(bench, quick_run: Path, tmp_path: Path) -> None:
    data = json.loads(quick_run.read_text())
    out = tmp_path / "again.json"
    missing = next(k for k in data["models"] if k.startswith("random/"))
    demo = {"inherited_test_acc": 0.5, "retrained_test_acc": 0.8, "strategy": "sandwich"}  # an earlier --demo-run
    partial = {**data, "models": {k: v for k, v in data["models"].items() if k != missing},
               "verdict": {**data["verdict"], "demo_run": demo},
               # written before finalist_seeds existed: it counts as 1 (what such a file ran), as --quick's
               "settings": {k: v for k, v in data["settings"].items() if k != "finalist_seeds"}}
    out.write_text(json.dumps(partial))
    again = bench.main(["--quick", "--out", str(out)])
    assert set(again["models"]) == set(data["models"])
    for key, model in data["models"].items():
        if key != missing:  # reused, not retrained (with a model missing, all are timed again, together)
            assert {**again["models"][key], "latency_ms": 0} == {**model, "latency_ms": 0}, key
    assert again["verdict"]["inherited_vs_retrained_pts"] == 30.0  # the demo's gap is kept without its folder
    benchmark_gap = data["verdict"]["inherited_vs_retrained_pts"]
    assert again["verdict"]["inherited_vs_retrained_pts_benchmark_settings"] == benchmark_gap
    assert again["supernets"] == data["supernets"]
    latencies = {k: m["latency_ms"] for k, m in again["models"].items()}
    complete = bench.main(["--quick", "--out", str(out)])  # nothing missing: the timings taken together are kept
    assert {k: m["latency_ms"] for k, m in complete["models"].items()} == latencies


def test_more_random_architectures_keep_the_run_and_train_only_the_new_draws(bench, quick_run, tmp_path) -> None:
    data = json.loads(quick_run.read_text())
    out = tmp_path / "grown.json"
    out.write_text(quick_run.read_text())
    grown = bench.main(["--quick", "--out", str(out), "--random", "4"])  # --quick draws 3 per budget
    old_random = {k for k, m in data["models"].items() if m["kind"].startswith("random")}
    new_random = {k for k, m in grown["models"].items() if m["kind"].startswith("random")} - old_random
    assert grown["supernets"] == data["supernets"]
    for key, model in data["models"].items():  # kept, not trained again
        assert {**grown["models"][key], "latency_ms": 0} == {**model, "latency_ms": 0}, key
    # one more architecture per budget (2 budgets), each trained with seed 0 and the ranking seed, within its budget
    assert len(new_random) == 2 * 2
    assert {grown["models"][k]["budget_macs"] for k in new_random} == set(data["settings"]["budgets"])
    assert all(m["costs"]["macs"] <= m["budget_macs"] for m in grown["models"].values() if m["kind"] == "random")
    assert [row["random_n"] for row in grown["verdict"]["per_budget"].values()] == [4, 4]
    assert grown["ranking_archs"][:3] == data["ranking_archs"][:3]  # the first draws are the stored ones
    # the supernets scored the first draws only: tau stays over those, and the verdict says so
    assert all(t["n"] == len(data["ranking_archs"]) for t in grown["verdict"]["kendall_tau_by_supernet"].values())
    assert f"kendall_tau: over the {len(data['ranking_archs'])} random architectures" in " ".join(
        grown["verdict"]["notes"])


@pytest.mark.parametrize("setting, before", [("finalist_cover", ()), ("split", "none")])
def test_a_file_written_before_a_setting_counts_as_run_without_it(bench, quick_run: Path, tmp_path: Path,
                                                                   setting: str, before: object) -> None:
    data = json.loads(quick_run.read_text())
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**data, "settings": {k: v for k, v in data["settings"].items() if k != setting}}))
    settings = bench.Settings(**data["settings"])  # --quick's: covering the front end, a supernet per front end
    assert getattr(settings, setting) and "reused_from_other_settings" in bench.Run(old, settings, False).data
    resumed = bench.Run(old, bench.Settings(**{**data["settings"], setting: before}), False)
    assert resumed.data["supernets"] == data["supernets"]


def test_run_report_plots_the_benchmark_points(quick_run: Path, tmp_path: Path) -> None:
    points = benchmark_points("tiny", "raw", quick_run)
    data = json.loads(quick_run.read_text())
    assert {p["kind"] for p in points} == {"random (benchmark)", "searched (benchmark)", "peer (benchmark)"}
    assert sorted(p["real_test_acc"] for p in points if p["kind"] == "random (benchmark)") == sorted(
        m["heldout_acc"] for m in data["models"].values() if m["kind"] == "random")
    other = benchmark_points("small", "raw", quick_run)  # another space: only the peers compare
    assert other and {p["kind"] for p in other} == {"peer (benchmark)"}
    # a run of one front end: the benchmark's random architectures of that front end, their heldout accuracy named
    sinc = [p for p in benchmark_points("tiny", "sinc", quick_run) if p["kind"] == "random (benchmark)"]
    assert sorted(p["name"] for p in sinc) == sorted(
        k for k, m in data["models"].items() if m["kind"] == "random" and m["arch"]["frontend"] == "sinc")
    assert {p["second_label"] for p in points} == {"heldout"}
    assert all(p["costs"]["weight_kb"] == data["models"][p["name"]]["costs"]["weight_bytes"] / 1000 for p in points)
    results = {"config": {"preset": "tiny", "frontend": "raw", "max_macs": 3.3e5},
               "points": [{"name": "retrained (float)", "kind": "retrained", "costs": {"macs": 3.1e5},
                           "test_acc": 0.5, "real_test_acc": 0.3}]}
    _, png = write_report(results, tmp_path, benchmark=quick_run)
    assert png.stat().st_size > 1000


def test_other_search_settings_reuse_only_the_standalone_trainings_of_the_same_recipe(bench, quick_run, tmp_path):
    data = json.loads(quick_run.read_text())
    out = tmp_path / "other.json"
    demo = {"inherited_test_acc": 0.5, "retrained_test_acc": 0.8, "strategy": "sandwich"}  # an earlier --demo-run
    sweep = {"runs": {"8 search epochs": {"gap_pts": 30.0}}}
    out.write_text(json.dumps({**data, "verdict": {**data["verdict"], "demo_run": demo},
                               "demo_gap_by_search_epochs": sweep}))
    # another search (one finalist, trained on two validation folds), the same recipe
    again = bench.main(["--quick", "--out", str(out), "--finalists", "1", "--finalist-seeds", "2", "--finalist-folds"])
    assert again["verdict"]["inherited_vs_retrained_pts"] == 30.0 and again["demo_gap_by_search_epochs"] == sweep
    reused = {k for k, m in data["models"].items() if m["kind"] in ("random", "random-seed", "peer", "peer-seed")}
    assert set(again["reused_from_other_settings"]) == reused
    for key in reused:
        assert again["models"][key]["train_s"] == data["models"][key]["train_s"]  # not retrained
    finalists = [sup["meta"]["evolution"]["finalists"] for name, sup in again["supernets"].items()
                 if name.startswith("sandwich/")]
    assert finalists and all(len([r for r in rows if not r.get("covers")]) == 1 for rows in finalists)
    assert all(r["val_clips"][0] == again["data"]["val"] and len(r["val_accs"]) == 2
               for rows in finalists for r in rows)
    recipe = bench.main(["--quick", "--out", str(out), "--finalists", "1", "--epochs", "2"])  # another recipe
    assert recipe.get("reused_from_other_settings") == []


def test_companion_searched_models_count_for_the_peers_they_are_under(bench, quick_run, tmp_path):
    data = json.loads(quick_run.read_text())
    main = data["settings"]["strategies"][0]
    peer_macs = min(m["costs"]["macs"] for m in data["models"].values() if m["kind"] == "peer")
    budget = 0.9 * peer_macs  # above every budget of the run, under every peer
    companion = {**data, "settings": {**data["settings"], "preset": "other", "budgets": [budget]},
                 "models": {k: {**m, "budget_macs": budget, "heldout_acc": 0.5}
                            for k, m in data["models"].items() if m["kind"] == main},
                 "verdict": {"per_budget": {f"{budget:g}": {main: {"minus_random_median_pts": -3.21}}}}}
    (tmp_path / "companion.json").write_text(json.dumps(companion))
    out = tmp_path / "with.json"
    out.write_text(quick_run.read_text())
    again = bench.main(["--quick", "--out", str(out), "--companion", str(tmp_path / "companion.json")])
    for key, m in again["models"].items():
        if m["kind"] != "peer":
            continue
        # a peer is trained with the searched models' training seeds; its margin is against their mean
        accs = [m["heldout_acc"]] + [again["models"][f"{key}/s{s}"]["heldout_acc"] for s in m["seeds"][1:]]
        assert len(accs) == len({0, *data["settings"]["retrain_seeds"]}) > 1
        assert (m["compared_budget_macs"], m["compared_preset"]) == (budget, "other")
        assert m["margin_pts"] == round(100 * (0.5 - sum(accs) / len(accs)), 2)
    # the companion's own searched-vs-random difference at its budget counts in the verdict
    by_budget = again["verdict"]["searched_minus_random_median_by_budget"]
    # (no random architectures there; its searched ones all score 50 %: no spread)
    assert by_budget[f"{budget:g}"] == {"preset": "other", "minus_random_median_pts": -3.21,
                                        "best_random_minus_median_pts": None, "random_n": None,
                                        "minus_same_front_end_median_pts": None, "same_front_end_between_std_pts": 0.0}
    own = [row[main]["minus_random_median_pts"] for row in data["verdict"]["per_budget"].values()]
    assert again["verdict"]["searched_minus_random_median_pts"] == min(-3.21, *own)
    # a companion's own trainings of a peer count in its mean; a training two files share (a companion reused it
    # from this run, or from another companion) counts once
    peer_key = next(k for k, m in data["models"].items() if m["kind"] == "peer")
    extra = {**data["models"][peer_key], "seed": 7, "heldout_acc": 0.25}
    with_peer = {**companion, "models": {**companion["models"], f"{peer_key}/s7": extra,
                                         peer_key: data["models"][peer_key]}}
    for i in (1, 2):
        (tmp_path / f"c{i}.json").write_text(json.dumps(with_peer))
    pooled = bench.main(["--quick", "--out", str(out), "--companion", str(tmp_path / "c1.json"),
                         "--companion", str(tmp_path / "c2.json")])["models"][peer_key]
    accs = [pooled["heldout_acc"]] + [again["models"][f"{peer_key}/s{s}"]["heldout_acc"] for s in pooled["seeds"][1:]]
    assert pooled["compared_trainings"] == len(accs) + 1
    assert pooled["compared_heldout_mean"] == pytest.approx((sum(accs) + 0.25) / (len(accs) + 1))
    assert pooled["margin_pts"] == round(100 * (0.5 - pooled["compared_heldout_mean"]), 2)
    (tmp_path / "companion.json").write_text(json.dumps({**companion, "settings": {**companion["settings"],
                                                                                    "epochs": 99}}))
    with pytest.raises(SystemExit, match="another recipe"):
        bench.main(["--quick", "--out", str(out), "--companion", str(tmp_path / "companion.json")])
    unfinished = {k: v for k, v in companion.items() if k != "verdict"}
    (tmp_path / "companion.json").write_text(json.dumps(unfinished))
    with pytest.raises(SystemExit, match="no verdict yet"):
        bench.main(["--quick", "--out", str(out), "--companion", str(tmp_path / "companion.json")])


def test_two_spaces_searched_at_a_peers_budget_are_chosen_between_by_dev_val_not_heldout(bench) -> None:
    def model(budget: float, preset: str, val: float, heldout: float) -> dict:
        return {"kind": "sandwich", "budget_macs": budget, "preset": preset, "val_acc": val, "heldout_acc": heldout}

    models = {"a0": model(2e7, "paper", 0.70, 0.80), "a1": model(2e7, "paper", 0.72, 0.78),
              "b0": model(2e7, "wide", 0.75, 0.70), "b1": model(2e7, "wide", 0.77, 0.74),
              "small": model(1e7, "wide", 0.99, 0.99), "over": model(3e7, "paper", 0.99, 0.99)}
    budget, preset, heldout = bench.peer_margin(models, 2.5e7, "sandwich")
    assert (budget, preset) == (2e7, "wide") and heldout == pytest.approx(0.72)
    assert bench.peer_margin(models, 5e6, "sandwich") == (None, None, None)


def test_an_empty_list_of_search_seeds_is_refused_while_empty_retrain_and_ranking_seeds_are_allowed(bench, tmp_path):
    assert bench.int_list("") == () and bench.int_list("0,2") == (0, 2)
    with pytest.raises(SystemExit, match="at least one search seed"):
        bench.main(["--quick", "--seeds", "", "--out", str(tmp_path / "none.json")])
    assert not (tmp_path / "none.json").exists()


def test_synthesized_protocol_trains_on_synthesized_splits_and_tests_on_the_given_clips(bench, tiny_gsc) -> None:
    import torch
    from torch.utils.data import TensorDataset

    from nni_kws.data.datamodule import SpeechCommandsDataModule

    heldout = TensorDataset(torch.zeros(3, 1, 16000), torch.tensor([0, 1, 2]))
    dm = bench.SynthesizedTraining(heldout, root=tiny_gsc, batch_size=8, seed=0)
    plain = SpeechCommandsDataModule(tiny_gsc, batch_size=8, seed=0)
    assert dm.dataset("testing") is heldout and [y.tolist() for _, y in dm.test_dataloader()] == [[0, 1, 2]]
    for subset in ("training", "validation"):
        assert len(dm.dataset(subset)) == len(plain.dataset(subset)) and len(dm.dataset(subset)) != 3
    with pytest.raises(SystemExit, match="--data must be"):
        bench.main(["--data", "synth"])


def test_recipe_probe_counts_the_searched_models_against_random_ones_and_peers_by_budget(bench, tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("recipe_probe", BENCH.with_name("recipe_probe.py"))
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)  # type: ignore[union-attr]

    def record(kind: str, arch: str, seed: int, acc: float, budget: float = 1e6) -> dict:
        return {"kind": kind, "arch": {"a": arch}, "seed": seed, "val_acc": acc, "heldout_acc": acc,
                "budget_macs": budget}

    models = {  # source records (the benchmark's keys) and probe records (name@seed) alike
        "random/A": record("random", "A", 0, 0.70), "random/A/s1": record("random-seed", "A", 1, 0.74),
        "random/B": record("random", "B", 0, 0.80), "random/B/s1": record("random-seed", "B", 1, 0.78),
        "random/C@0": record("random", "C", 0, 0.60), "random/C@1": record("random", "C", 1, 0.66),
        "sandwich/S@0": record("sandwich", "S", 0, 0.79), "sandwich/S@1": record("sandwich", "S", 1, 0.77),
        "gumbel-hard/G": record("gumbel-hard", "G", 0, 0.99),  # another strategy: not the searched models
        "random/D": record("random", "D", 0, 0.99, 2e6),  # another budget, with no searched model: no row
    }
    result = probe.vs_random(models, "heldout_acc", "sandwich")
    # searched mean 0.78; seed-0 median of 0.70 / 0.80 / 0.60 is 0.70; per-architecture means 0.72 / 0.79 / 0.63
    assert result == {"1e+06": {"minus_median_seed0_pts": 8.0, "minus_median_arch_means_pts": 6.0,
                                "best_random_minus_median_pts": 7.0, "above_random_pct": 66.7}}
    # the architectures with 2 trainings: means 72 / 79 / 63 / 78 %, variance 54 (std 7.35 points); trainings'
    # variances 8 / 2 / 18 / 2 (std 2.83 / 1.41 / 4.24 / 1.41, mean 2.47); between: sqrt(54 - (4 + 1 + 9 + 1) / 4)
    spread = probe.arch_spread(models, "heldout_acc", "sandwich")
    assert spread == {"1e+06": {"n_architectures": 4, "means_std_pts": 7.35, "training_std_pts": 2.47,
                                "between_std_pts": 7.09}}
    conv = {"random/E@0": {**record("random", "E", 0, 0.10), "arch": {"a": "E", "frontend": "conv"}},
            "random/E@1": {**record("random", "E", 1, 0.20), "arch": {"a": "E", "frontend": "conv"}}}
    assert probe.arch_spread({**models, **conv}, "heldout_acc", "sandwich") == spread  # not the searched front end
    peers = {"peer/sinc-dsconv@0": {"kind": "peer", "budget_macs": None, "heldout_acc": 0.75, "costs": {"macs": 1.5e6}},
             "peer/ds-cnn-s": {"kind": "peer", "budget_macs": None, "heldout_acc": 0.70, "costs": {"macs": 5e5}}}
    larger = {"sandwich/L@0": record("sandwich", "L", 0, 0.90, 3e6)}  # searched above the first peer's MACs
    # each peer against the searched models of the largest budget at or below its MACs; none there: None
    assert probe.gap_pts({**models, **peers, **larger}, "heldout_acc", "sandwich", ("sinc-dsconv", "ds-cnn-s", "x")) \
        == {"sinc-dsconv": 3.0, "ds-cnn-s": None, "x": None}

    # --reuse: an older probe's trainings of the same name, architecture and seed; a newer source's searched model
    # under an old name (another architecture) is trained again, and a probe of another recipe is refused (other
    # search settings do not matter)
    old = tmp_path / "old.json"
    recipe = {"preset": "wide", "epochs": 9, "lr": 0.2, "batch_size": 64, "val_fraction": 0.15, "data": "real"}
    old.write_text(json.dumps({"settings": {**recipe, "finalists": 0}, "models": {
        "random/A@0": record("random", "A", 0, 0.7), "sandwich/s0@0": record("sandwich", "S", 0, 0.8),
        "peer/sinc-dsconv@0": peers["peer/sinc-dsconv@0"]}}))
    wanted = {"random/A@0": {"a": "A"}, "sandwich/s0@0": {"a": "T"}, "peer/sinc-dsconv@0": None}
    assert sorted(probe.reuse(old, {**recipe, "finalists": 6}, wanted)) == ["peer/sinc-dsconv@0", "random/A@0"]
    with pytest.raises(SystemExit, match="another recipe"):
        probe.reuse(old, {**recipe, "epochs": 3}, wanted)


def test_a_space_name_with_a_front_end_runs_the_benchmark_in_that_space(bench, tmp_path) -> None:
    from nni_kws.cost.counter import count_costs
    from nni_kws.space.blocks import MfccFrontEnd

    settings = bench.Settings(preset="tiny-mfcc", budgets=(1.21e6,), random=3)  # the MFCC front end alone: 1.14M
    space = bench.space_by_name(settings.preset)
    cost_model = bench.CostModel(space)
    run = bench.Run(tmp_path / "mfcc.json", settings, fresh=True)
    budget_of = bench.random_baseline(run, cost_model)
    archs = run.data["ranking_archs"]
    assert len(archs) == 3 and set(budget_of.values()) == {1.21e6}
    for arch in archs:
        model = bench.build_model(arch, bench.space_by_name(settings.preset))
        counted = count_costs(model)  # the generic counter, not the space's table
        assert isinstance(model.frontend, MfccFrontEnd) and "frontend" not in arch
        assert counted["frontend_macs"] > 0 and counted["macs"] == cost_model.exact(arch)["macs"] <= 1.21e6


def test_random_trainings_reused_at_another_budget_count_at_that_budget(bench, tmp_path) -> None:
    settings = bench.Settings(preset="tiny-mfcc", budgets=(1.25e6,), random=4)
    cost_model = bench.CostModel(bench.space_by_name(settings.preset))
    first = bench.Run(tmp_path / "runs.json", settings, fresh=True)
    bench.random_baseline(first, cost_model)
    for arch in first.data["ranking_archs"]:
        first.models[f"random/{bench.arch_key(arch)}"] = {"kind": "random", "arch": arch, "budget_macs": 1.25e6,
                                                          "seed": 0, "val_acc": 0.5, "heldout_acc": 0.5}
    first.save()
    again = bench.Run(tmp_path / "runs.json", bench.dataclasses.replace(settings, budgets=(1.21e6,)), fresh=False)
    budget_of = bench.random_baseline(again, cost_model)
    kept = [m for m in again.models.values() if m["kind"] == "random"]
    assert kept and len(kept) < 4  # some of the first draw are within the smaller budget, and only those are kept
    for model in kept:
        assert cost_model.exact(model["arch"])["macs"] <= 1.21e6
        assert model["budget_macs"] == budget_of[bench.arch_key(model["arch"])] == 1.21e6


def test_space_spread_trains_the_benchmarks_random_draw_and_tells_spread_from_training_noise(bench, tmp_path):
    spec = importlib.util.spec_from_file_location("space_spread", BENCH.with_name("space_spread.py"))
    screen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screen)  # type: ignore[union-attr]

    def record(arch: dict, seed: int, acc: float) -> dict:
        return {"kind": "random-seed" if seed else "random", "arch": arch, "seed": seed, "val_acc": acc,
                "heldout_acc": acc, "budget_macs": 1e6}

    a, b, c, conv = {"k": 1}, {"k": 2}, {"k": 3}, {"k": 1, "frontend": "conv"}
    models = {"A": record(a, 0, 0.70), "A1": record(a, 1, 0.74), "B": record(b, 0, 0.80), "B1": record(b, 1, 0.78),
              "C": record(c, 0, 0.60), "C1": record(c, 1, 0.66), "D": record(conv, 0, 0.3), "D1": record(conv, 1, 0.3)}
    # sinc (the fixed front end of the records without one): means 72 / 79 / 63 %, median 72, variance 64.33;
    # trainings' variances 8 / 2 / 18 (std 2.83 / 1.41 / 4.24), between: sqrt(64.33 - (4 + 1 + 9) / 3)
    assert screen.spread(models, "sinc")["heldout"] == {
        "conv": {"median_pct": 30.0, "best_minus_median_pts": 0.0},  # one architecture: no spread to tell
        "sinc": {"n_architectures": 3, "means_std_pts": 8.02, "training_std_pts": 2.83, "between_std_pts": 7.72,
                 "median_pct": 72.0, "best_minus_median_pts": 7.0}}

    # end to end on tiny data, at a budget that only part of the space meets
    space = "tiny-sinc"
    cost_model = bench.CostModel(bench.space_by_name(space))
    macs = sorted(cost_model.exact(a)["macs"] for a in bench.random_archs(
        bench.space_choices(bench.space_by_name(space)), 20, seed=0, accept=lambda a: True))
    budget = macs[len(macs) // 2]
    out = tmp_path / "screen.json"
    dm = bench.quick_data(tmp_path / "data", bench.Settings(preset=space))
    data = screen.screen(space, budget, 2, (0, 1), out, dm)
    keys = sorted(data["models"])
    assert len(keys) == 4 and all(m["costs"]["macs"] <= budget for m in data["models"].values())
    assert data["spread"]["heldout"]["sinc"]["n_architectures"] == 2
    # the same draw and keys as the benchmark's random baseline, whose run reuses them (same recipe and space)
    settings = bench.Settings(preset=space, budgets=(budget,), random=2)
    run = bench.Run(out, settings, fresh=False)
    bench.random_baseline(run, cost_model)
    assert sorted(run.models) == keys and sorted(run.data["reused_from_other_settings"]) == keys
    drawn = set(map(bench.arch_key, run.data["ranking_archs"]))
    assert {bench.arch_key(m["arch"]) for m in run.models.values()} == drawn
