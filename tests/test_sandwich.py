"""Sandwich-rule single-path supernet training and the finalist stage of a one-shot search."""
from __future__ import annotations

import logging
import random
import warnings

import pytest
import torch
from test_recalibrate import _feasible_budget, separable_clips
from torch.utils.data import DataLoader

from nni_kws.cost import CostModel
from nni_kws.search import ResourcePenalty, run_search
from nni_kws.search.evolution import mutate_arch, network_key, random_archs
from nni_kws.search.finalists import finalist_search, top_distinct
from nni_kws.search.sandwich import extreme_arch
from nni_kws.space import active_arch, build_model, build_space, random_arch, space_choices
from nni_kws.space.mixed_ops import derive_model

warnings.filterwarnings("ignore", category=RuntimeWarning, module="nni")
logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


def test_extreme_arch_takes_the_numeric_extremes_and_draws_the_front_end():
    choices = space_choices(build_space("tiny"))
    random.seed(0)
    largest, smallest = extreme_arch(choices, True), extreme_arch(choices, False)
    for label, values in choices.items():
        if label == "frontend":
            assert largest[label] in values and smallest[label] in values
        else:
            assert (largest[label], smallest[label]) == (max(values), min(values))
    assert {extreme_arch(choices, True)["frontend"] for _ in range(20)} == {"sinc", "conv"}


def test_a_searched_stride_is_sampled_per_path_and_its_network_inherits_the_supernet():
    """A stride changes the length every later layer sees: the largest path keeps it (stride 1), the smallest
    halves it; single-path search trains both, the evolution keeps the budget, and the derived network (stride
    read back from its conv) inherits the supernet's weights. DARTS, which mixes paths, refuses the space."""
    space = build_space("tiny", strides=((1, 2), (1, 2)))
    choices = space_choices(space)
    largest, smallest = extreme_arch(choices, True), extreme_arch(choices, False)
    assert (largest["s0_stride"], smallest["s0_stride"]) == (1, 2)
    cost_model = CostModel(space)
    budget = cost_model.exact({**largest, "s0_stride": 2, "s1_stride": 2})["macs"]  # stride 1 needs smaller blocks
    assert cost_model.exact(largest)["macs"] > budget
    loader = DataLoader(separable_clips(2, seed=0), batch_size=8)
    torch.manual_seed(0)
    result = run_search(space, loader, loader, strategy="sandwich", epochs=1, progress=False, cost_model=cost_model,
                        penalties=[ResourcePenalty("macs", budget, 1.0)],
                        evolution={"population": 4, "sample": 2, "cycles": 4})
    assert cost_model.exact(result.arch)["macs"] <= budget
    model = derive_model(space, result.arch, result.supernet)
    first = model.stages[0][0]
    assert first[-2][0].stride == (result.arch["s0_stride"],)
    assert first.has_skip == (result.arch["s0_stride"] == 1)  # tiny's stage 0 keeps the front end's 8 channels
    with pytest.raises(ValueError, match="s0_stride"):
        run_search(build_space("tiny", strides=((1, 2), 2)), loader, loader, strategy="darts", epochs=1,
                   progress=False)
    from nni_kws.pipeline.config import PipelineConfig, check_inputs
    check_inputs(PipelineConfig(strategy="sandwich", preset="widestride", max_macs=2.49e7, real_test=None))
    with pytest.raises(ValueError, match="s0_stride"):  # before any data is read
        check_inputs(PipelineConfig(strategy="gumbel-hard", preset="widestride", max_macs=2.49e7,
                                    real_test=None))


def _stage_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.startswith("stages.") and v.dtype.is_floating_point and "running" not in k}


def test_every_step_trains_the_deepest_blocks_which_a_budgeted_single_path_search_leaves_alone():
    """s1's second block is used only by depth-2 paths: with the sandwich rule (no random path) one step
    updates it; RandomOneShot under a budget that excludes depth 2 never touches it."""
    cost_model = CostModel("tiny")
    loader = DataLoader(separable_clips(2, seed=0), batch_size=8)
    shallow = min(cost_model.exact({**a, "s1_depth": 2})["macs"] for a in
                  [{label: values[0] for label, values in cost_model.choices.items()}]) - 1  # no depth-2 path fits
    changed = {}
    for strategy, kwargs in (("sandwich", {"strategy_kwargs": {"n_random": 0}}), ("random", {})):
        before, after = ({}, {})
        for epochs, params in ((0, before), (1, after)):  # 0 epochs: the supernet's initial weights
            torch.manual_seed(0)
            result = run_search(build_space("tiny"), loader, loader, strategy=strategy, epochs=epochs, progress=False,
                                penalties=[ResourcePenalty("macs", shallow, 1.0)], cost_model=cost_model,
                                evolution={"population": 2, "sample": 1, "cycles": 0}, **kwargs)
            params.update(_stage_params(result.supernet))
        deep = [k for k in before if k.startswith("stages.1.blocks.1.")]
        assert deep
        changed[strategy] = {k: not torch.equal(before[k], after[k]) for k in deep}
        assert cost_model.exact(result.arch)["macs"] <= shallow and result.arch["s1_depth"] == 1
    assert all(changed["sandwich"].values()) and not any(changed["random"].values())


def test_top_distinct_keeps_the_best_score_of_each_architecture():
    a, b, c = {"x": 1}, {"x": 2}, {"x": 3}
    assert top_distinct([(a, 0.1), (b, 0.5), (a, 0.7), (c, 0.2)], 2) == [(a, 0.7), (b, 0.5)]


def test_architectures_that_build_the_same_network_count_once():
    """Labels of blocks beyond their stage's depth build nothing: top_distinct, random_archs and mutate_arch see
    through them (a stage of depth 1 with another second block is the same network, as its state dict shows)."""
    space = build_space("tiny")
    choices = space_choices(space)
    base = {**random_arch(space, 0), "s1_depth": 1}
    twin = {**base, "s1_i1_k": next(v for v in choices["s1_i1_k"] if v != base["s1_i1_k"])}
    deeper = {**twin, "s1_depth": 2}
    shapes = [{k: v.shape for k, v in build_model(a, space).state_dict().items()} for a in (base, twin, deeper)]
    assert shapes[0] == shapes[1] != shapes[2]
    assert active_arch(base) == active_arch(twin) != active_arch(deeper)
    assert top_distinct([(base, 0.5), (twin, 0.6), (deeper, 0.4)], 2) == [(twin, 0.6), (deeper, 0.4)]
    drawn = random_archs(choices, 12, seed=0)
    assert len({network_key(a) for a in drawn}) == 12
    rng = random.Random(0)
    for _ in range(50):  # every mutation changes the network
        assert network_key(mutate_arch(base, choices, rng)) != network_key(base)


def test_top_distinct_adds_the_best_of_each_front_end_the_k_best_miss():
    conv = [({"frontend": "conv", "x": i}, 0.9 - i / 10) for i in range(3)]
    sinc = [({"frontend": "sinc", "x": i}, 0.5 - i / 10) for i in range(2)]
    assert top_distinct(conv + sinc, 2, cover=["frontend"]) == conv[:2] + sinc[:1]
    assert top_distinct(conv + sinc, 4, cover=["frontend"]) == conv + sinc[:1]  # covered already: k, no more
    assert top_distinct(conv, 2, cover=["frontend"]) == conv[:2]  # no sinc candidate to add


def test_finalists_are_trained_standalone_and_the_best_on_validation_wins():
    cost_model = CostModel("tiny")
    budget = _feasible_budget(cost_model)
    train = DataLoader(separable_clips(6, seed=0), batch_size=12, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    val = DataLoader(separable_clips(4, seed=1), batch_size=16)
    torch.manual_seed(0)
    result = run_search(build_space("tiny"), train, val, strategy="sandwich", epochs=1, progress=False,
                        penalties=[ResourcePenalty("macs", budget, 1.0)], cost_model=cost_model, learning_rate=0.05,
                        evolution={"population": 4, "sample": 2, "cycles": 2}, finalists={"k": 2, "epochs": 1})
    rows = result.meta["evolution"]["finalists"]
    assert len({str(r["arch"]) for r in rows}) == len(rows)
    best, added = rows[:2], rows[2:]  # the 2 best by inherited accuracy, then one per front end they miss
    assert [r["inherited_val_acc"] for r in best] == sorted((r["inherited_val_acc"] for r in best), reverse=True)
    assert all(r.get("covers") for r in added) and not any(r.get("covers") for r in best)
    assert len(added) == 2 - len({r["arch"]["frontend"] for r in best})
    assert {r["arch"]["frontend"] for r in rows} == {"sinc", "conv"}
    assert result.arch == max(rows, key=lambda r: r["val_acc"])["arch"]
    assert cost_model.exact(result.arch)["macs"] <= budget


def test_finalists_trained_with_several_seeds_are_picked_by_their_mean():
    from nni_kws.space import build_model, random_arch

    train = DataLoader(separable_clips(6, seed=0), batch_size=12, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    val = DataLoader(separable_clips(4, seed=1), batch_size=16)
    scored = [(random_arch(build_space("tiny"), i), 0.5 - i / 10) for i in range(3)]
    result = finalist_search(scored, lambda a: build_model(a, build_space("tiny")), train, val, k=2, epochs=1,
                             seeds=2, learning_rate=0.05)
    assert [r["arch"] for r in result.finalists] == [scored[0][0], scored[1][0]]
    for row in result.finalists:
        assert len(row["val_accs"]) == 2 and row["val_acc"] == pytest.approx(sum(row["val_accs"]) / 2)
    assert result.arch == max(result.finalists, key=lambda r: r["val_acc"])["arch"]
    with pytest.raises(ValueError, match="seeds"):
        finalist_search(scored, lambda a: build_model(a, build_space("tiny")), train, val, k=2, epochs=1, seeds=0)

    # with folds, training i trains and validates on fold i's loaders, and the plain pair goes unused
    class Counted(DataLoader):
        def __iter__(self):
            self.passes = getattr(self, "passes", 0) + 1
            return super().__iter__()

    plain = [Counted(train.dataset, batch_size=12), Counted(val.dataset, batch_size=16)]
    folds = [(Counted(train.dataset, batch_size=12), Counted(val.dataset, batch_size=16)) for _ in range(2)]
    folded = finalist_search(scored, lambda a: build_model(a, build_space("tiny")), *plain, k=2, epochs=1, seeds=2,
                             folds=folds, learning_rate=0.05)
    assert len(folded.finalists) == 2 and all(len(r["val_accs"]) == 2 for r in folded.finalists)
    assert [getattr(loader, "passes", 0) for loader in plain] == [0, 0]
    passes = [[getattr(loader, "passes", 0) for loader in fold] for fold in folds]
    assert passes[0] == passes[1] and min(passes[0]) >= 2  # each fold: one training of each of the 2 finalists
    with pytest.raises(ValueError, match="one fold per seed, got 1 folds for 2 seeds"):
        finalist_search(scored, lambda a: build_model(a, build_space("tiny")), train, val, k=2, epochs=1, seeds=2,
                        folds=[(train, val)])


def test_pipeline_takes_finalists_only_with_an_evolution_strategy():
    from nni_kws.pipeline.config import PipelineConfig, check_inputs

    check_inputs(PipelineConfig(strategy="sandwich", finalists=2, real_test=None))
    with pytest.raises(ValueError, match="--finalists needs"):
        check_inputs(PipelineConfig(strategy="darts", finalists=2, real_test=None))
    with pytest.raises(ValueError, match="finalist-epochs"):
        check_inputs(PipelineConfig(strategy="random", finalists=2, finalist_epochs=0, real_test=None))
    with pytest.raises(ValueError, match="finalist-seeds"):
        check_inputs(PipelineConfig(strategy="sandwich", finalists=2, finalist_seeds=0, real_test=None))
    check_inputs(PipelineConfig(strategy="sandwich", frontend="raw", split="frontend", real_test=None))
    with pytest.raises(ValueError, match="split needs"):
        check_inputs(PipelineConfig(strategy="darts", frontend="raw", split="frontend", real_test=None))
    with pytest.raises(ValueError, match="choice of the space .*got 'front'"):
        check_inputs(PipelineConfig(strategy="sandwich", split="front", real_test=None))
    with pytest.raises(ValueError, match="choice of the space .*got 'front'"):  # the library checks it too
        run_search(build_space("tiny"), [], [], strategy="sandwich", epochs=1, split="front")
    # searching the front end ('raw'), one supernet per front end for the strategies that pick by evolution,
    # sharing the epochs
    raw = PipelineConfig(frontend="raw", search_epochs=16)
    assert (raw.split_choice(), raw.supernet_epochs()) == ("frontend", 8)
    assert PipelineConfig(frontend="raw", search_epochs=5).supernet_epochs() == 3
    for one in (dict(frontend="raw", split="none"), dict(frontend="raw", strategy="darts"), dict(frontend="mfcc"),
                dict(frontend="sinc")):
        cfg = PipelineConfig(search_epochs=16, **one)
        assert (cfg.split_choice(), cfg.supernet_epochs()) == (None, 16)
    # by default 3 finalists for the strategies that pick by evolution, none for the others (no error)
    assert PipelineConfig(strategy="sandwich").finalist_count() == 3
    assert PipelineConfig(strategy="darts").finalist_count() == 0
    check_inputs(PipelineConfig(strategy="darts", real_test=None))


@pytest.mark.parametrize("strategy", ["random", "sandwich"])
def test_single_path_searches_with_one_seed_train_the_same_paths(strategy: str):
    """NNI 3.0 draws single paths from an unseeded numpy RandomState; ours are seeded, so two searches with
    one seed give the same losses, supernet weights and architecture (and a resumed search can equal one)."""
    def search() -> tuple[list, dict, dict]:
        train = DataLoader(separable_clips(4, seed=0), batch_size=12, shuffle=True,
                           generator=torch.Generator().manual_seed(0))
        val = DataLoader(separable_clips(2, seed=1), batch_size=16)
        torch.manual_seed(0)
        result = run_search(build_space("tiny"), train, val, strategy=strategy, epochs=2, progress=False, seed=3,
                            learning_rate=0.05, evolution={"population": 4, "sample": 2, "cycles": 2})
        losses = [r["metrics"]["train_loss"] for r in result.history]
        return losses, result.arch, result.meta["evolution"]

    first, second = search(), search()
    assert first[0] and first == second


def test_inplace_distillation_teaches_the_smaller_paths_the_largest_paths_predictions():
    """With ``inplace_distill`` the step's loss is the largest path's cross-entropy with the labels and the
    other paths' KL divergence to its (detached) predictions; without, every path fits the labels."""
    import torch.nn.functional as F

    from nni_kws.search.sandwich import SandwichOneShot
    from nni_kws.training import distillation_loss

    loader = DataLoader(separable_clips(2, seed=0), batch_size=8)
    x, y = next(iter(loader))
    losses = {}
    for distill in (True, False):
        strategy = SandwichOneShot(n_random=0, inplace_distill=distill)
        torch.manual_seed(0)
        run_search(build_space("tiny"), loader, loader, strategy=strategy, epochs=0, progress=False,
                   evolution={"population": 2, "sample": 1, "cycles": 0})
        module = strategy.oneshot_module
        module.eval()  # BatchNorm from running statistics: the same function in both computations
        module.trainer = module.training_module.trainer = None  # a step outside the fit loop (its logging is skipped)
        random.seed(3)
        losses[distill] = module.training_step((x, y), 0)
        random.seed(3)
        largest, smallest = (extreme_arch(module.choices, big) for big in (True, False))
        module.use_path(largest)
        teacher = module.training_module(x)
        module.use_path(smallest)
        student = module.training_module(x)
        smoothing = module.training_module.label_smoothing
        second = distillation_loss(student, teacher, 1.0) if distill else F.cross_entropy(student, y,
                                                                                          label_smoothing=smoothing)
        expected = (F.cross_entropy(teacher, y, label_smoothing=smoothing) + second) / 2
        assert torch.allclose(losses[distill], expected, atol=1e-6)
    assert not torch.allclose(losses[True], losses[False])


def test_a_split_search_trains_one_supernet_per_front_end_each_with_only_its_own_front_end(tmp_path):
    """``split='frontend'``: two supernets that share no weights; the sinc one never trains the conv front end
    (and the reverse), a candidate inherits from the supernet of its front end, and each resumes from its folder."""
    from nni_kws.search import CandidateScorer
    from nni_kws.search.split import SplitSupernet

    loader = DataLoader(separable_clips(2, seed=0), batch_size=8)

    def search(epochs: int, out=None):
        return run_search(build_space("tiny"), loader, loader, strategy="sandwich", epochs=epochs, progress=False,
                          split="frontend", out_dir=out, resume=True,
                          evolution={"population": 2, "sample": 1, "cycles": 0})

    before, after = search(0).supernet, search(1, tmp_path).supernet
    assert isinstance(after, SplitSupernet) and sorted(after.keys()) == ["conv", "sinc"]
    for trained in ("sinc", "conv"):  # each moved its own front end only
        old, new = before[trained].state_dict(), after[trained].state_dict()
        moved = {k.split(".")[1] for k in new if k.startswith("frontend.") and new[k].is_floating_point()
                 and not torch.equal(old[k], new[k])}
        assert moved == {trained}, (trained, moved)
        stages_before, stages_after = _stage_params(before[trained]), _stage_params(after[trained])
        assert any(not torch.equal(stages_before[k], stages_after[k]) for k in stages_before)
    sinc_stages, conv_stages = (_stage_params(after[v]) for v in ("sinc", "conv"))
    assert any(not torch.equal(sinc_stages[k], conv_stages[k]) for k in sinc_stages)  # nothing shared
    conv_arch = {**extreme_arch(space_choices(build_space("tiny")), False), "frontend": "conv"}
    inherited = CandidateScorer(build_space("tiny"), after, [], loader).model(conv_arch).state_dict()
    own = after["conv"].state_dict()
    assert all(torch.equal(v, own["frontend.conv." + k.split(".", 1)[1]]) for k, v in inherited.items()
               if k.startswith("frontend.") and "running" not in k and "num_batches" not in k)
    assert {p.name for p in tmp_path.iterdir()} == {"frontend-sinc", "frontend-conv"}
    resumed = search(1, tmp_path).supernet  # both finished: resuming trains nothing more
    assert all(torch.equal(v, resumed["conv"].state_dict()[k]) for k, v in own.items())


def test_a_sandwich_step_runs_a_shared_front_end_once_with_the_gradients_of_one_run_per_path():
    """With one front end for every path, a step sends the batch through it once, not once per path (three
    paths here), and the loss and every gradient are those of running it per path."""
    from nni_kws.search.sandwich import SandwichOneShot

    loader = DataLoader(separable_clips(2, seed=0), batch_size=8)
    x, y = next(iter(loader))
    strategy = SandwichOneShot(n_random=1)
    torch.manual_seed(0)
    run_search(build_space("tiny", frontend="sinc"), loader, loader, strategy=strategy, epochs=0, progress=False,
               evolution={"population": 2, "sample": 1, "cycles": 0})
    module = strategy.oneshot_module
    module.trainer = module.training_module.trainer = None  # a step outside the fit loop (its logging is skipped)
    assert module.shares_front_end
    filterbank_runs = []
    module.model.frontend[0].register_forward_hook(lambda *_: filterbank_runs.append(1))
    results = {}
    for shared in (True, False):
        module.shares_front_end = shared  # overrides the cached property
        module.zero_grad()
        random.seed(3)
        torch.manual_seed(3)  # dropout
        filterbank_runs.clear()
        loss = module.training_step((x, y), 0)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        results[shared] = (loss.detach(), grads, len(filterbank_runs))
    (loss_once, grads_once, runs_once), (loss_each, grads_each, runs_each) = results[True], results[False]
    assert (runs_once, runs_each) == (1, 3)
    torch.testing.assert_close(loss_once, loss_each)
    assert grads_once.keys() == grads_each.keys() and any(".frontend." in n for n in grads_once)
    for name, grad in grads_once.items():
        torch.testing.assert_close(grad, grads_each[name], rtol=1e-4, atol=1e-6, msg=name)


def test_architecture_step_options_are_reported_as_ignored_by_evolution_strategies(caplog):
    from nni_kws.pipeline.config import PipelineConfig, check_inputs

    with caplog.at_level("WARNING", logger="nni_kws.pipeline.config"):
        check_inputs(PipelineConfig(strategy="darts", lam=3.0, arch_every=5, real_test=None))
        assert not caplog.records
        check_inputs(PipelineConfig(strategy="sandwich", lam=3.0, arch_every=5, real_test=None))
    assert "--lambda, --arch-every steer the architecture step, which --strategy sandwich does not have" in caplog.text
