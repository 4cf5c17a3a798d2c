"""The KWS search space: sampling, freezing to plain torch, arch JSON, search-space files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from nni.mutable import Mutable
from torch import nn

from nni_kws.cli import main as cli_main
from nni_kws.space import (
    SEARCHED,
    InvalidArchitecture,
    KwsSpace,
    SincConv1d,
    bake_sinc,
    build_model,
    build_space,
    load_arch,
    load_searched_model,
    load_trained_model,
    random_arch,
    save_arch,
    space_by_name,
    space_choices,
    validate_arch,
)
from nni_kws.space.blocks import LogCompression
from nni_kws.space.commands import write_all
from nni_kws.space.labels import block_label, depth_label, expand_label, kernel_label, parse_label, stride_label

REPO = Path(__file__).resolve().parents[1]
ALLOWED_LEAVES = (nn.Conv1d, nn.BatchNorm1d, nn.ReLU, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.Linear,
                  nn.Identity, nn.Dropout, SincConv1d, LogCompression)


@pytest.mark.parametrize("preset", ["tiny", "small", "paper", "wide", "widestride"])
def test_random_architectures_freeze_to_plain_torch_and_classify(preset: str) -> None:
    space = build_space(preset)
    for seed in range(3):
        model = space.freeze(random_arch(space, seed))
        # The root keeps its class (NNI freezes children, not the root); everything below is torch.
        for module in list(model.modules())[1:]:
            assert not isinstance(module, Mutable), f"{type(module).__name__} left in frozen model"
            if not list(module.children()):
                assert isinstance(module, ALLOWED_LEAVES), type(module)
        assert model(torch.randn(2, 1, 16000)).shape == (2, 12)


def test_wide_space_reaches_the_sinc_peers_ingredients_within_its_macs() -> None:
    """'wide' exists to search at SincConv+DSConv's cost with its kernel-25 depthwise and 160-wide blocks:
    such an architecture must fit under the peer's MACs (counted independently of the cost model)."""
    from nni_kws.baselines import baseline_costs
    from nni_kws.cost import CostModel
    from nni_kws.cost.counter import count_costs

    space = build_space("wide")
    arch = {label: ("sinc" if label == "frontend" else 1 if label.endswith(("_depth", "_e")) else 25)
            for label in space_choices(space)}
    model = build_model(arch, build_space("wide"))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert max(m.kernel_size[0] for m in convs if m.groups > 1) == 25 and max(m.out_channels for m in convs) == 160
    macs = count_costs(model)["macs"]
    assert macs == CostModel(space).exact(arch)["macs"]
    assert macs <= baseline_costs("sinc-dsconv")["macs"]


@pytest.mark.parametrize("frontend", ["sinc", "conv", "mfcc"])
def test_frontends_and_coarse_space(frontend: str) -> None:
    space = build_space("tiny", frontend=frontend, coarse=True)
    labels = space_choices(space)
    assert ("frontend" in labels) is False
    assert labels["s0_i0"] == ["k3e1", "k3e2", "k5e1", "k5e2"]
    model = build_model(random_arch(space, 0), space)
    assert model(torch.randn(3, 1, 16000)).shape == (3, 12)


def test_labels_read_like_the_paper_table() -> None:
    labels = space_choices(build_space("small"))
    assert labels["frontend"] == ["sinc", "conv"]
    assert labels["s0_depth"] == [1, 2]
    assert labels["s2_i1_k"] == [3, 5, 7]
    assert labels["s2_i1_e"] == [1, 2, 3]


@pytest.mark.parametrize("preset, coarse", [("widestride", False), ("tiny", True)])
def test_every_stage_label_parses_back_to_the_stage_plan_that_made_it(preset: str, coarse: bool) -> None:
    space = build_space(preset, coarse=coarse)
    parsed = {label: parse_label(label) for label in space_choices(space)}
    assert [label for label, p in parsed.items() if p is None] == ["frontend"]
    expected = set()
    for plan in space.stage_plans:
        expected |= {("stride", plan.index, None)} if len(plan.strides) > 1 else set()
        expected |= {("depth", plan.index, None)} if plan.max_depth > 1 else set()
        kinds = ("block",) if coarse else ("kernel", "expand")
        expected |= {(kind, plan.index, i) for kind in kinds for i in range(plan.max_depth)}
    assert {tuple(p) for p in parsed.values() if p} == expected
    builders = {"depth": depth_label, "stride": stride_label, "block": block_label, "kernel": kernel_label,
                "expand": expand_label}
    for label, p in parsed.items():
        if p:
            assert builders[p.kind](p.stage, *([] if p.block is None else [p.block])) == label


def test_depth_choice_switches_blocks_off() -> None:
    space = build_space("tiny")
    arch = random_arch(space, 0)
    one = build_model({**arch, "s1_depth": 1}, space)
    two = build_model({**arch, "s1_depth": 2}, space)
    assert len(one.stages[1]) == 1 and len(two.stages[1]) == 2
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(two) > n(one)


def test_onestride_keeps_the_mfcc_time_axis_and_fits_under_ds_cnn_s() -> None:
    """'onestride' exists to search over the MFCC front end at DS-CNN-S's cost without halving its 51 frames
    three times as 'compact' does: its cheapest architecture keeps 26 frames to the head and fits under the peer's
    MACs (counted independently of the cost model)."""
    from nni_kws.baselines import baseline_costs
    from nni_kws.cost.counter import count_costs

    def frames_at_head(preset: str) -> tuple[int, int]:
        space = build_space(preset, frontend="mfcc")
        model = build_model({label: min(values) for label, values in space_choices(space).items()}, space)
        macs = count_costs(model)["macs"]
        return model.stages(model.frontend(torch.randn(1, 1, 16000))).shape[-1], macs

    (onestride, macs), (compact, _) = frames_at_head("onestride"), frames_at_head("compact")
    assert (onestride, compact) == (26, 7)
    assert macs <= baseline_costs("ds-cnn-s")["macs"]


def test_widestride_trades_time_resolution_for_block_size_under_the_sinc_peers_macs() -> None:
    """'widestride' exists so that at SincConv+DSConv's cost a network may keep every stage at full time
    resolution with small blocks, or halve it four times with the peer's kernel-25 blocks; both fit under the
    peer's MACs (counted by the generic counter), the large blocks at full resolution do not."""
    from nni_kws.baselines import baseline_costs
    from nni_kws.cost.counter import count_costs

    space = build_space("widestride")
    choices = space_choices(space)

    def network(stride: int, kernel: int, expand: int, depth: int) -> nn.Module:
        arch = {label: "sinc" if label == "frontend" else stride if label.endswith("_stride") else
                expand if label.endswith("_e") else min(depth, max(values)) if label.endswith("_depth") else kernel
                for label, values in choices.items()}
        return build_model(arch, space)

    peer = baseline_costs("sinc-dsconv")["macs"]
    for stride, kernel, expand, depth, frames, fits in ((1, 3, 1, 1, 250, True), (2, 25, 2, 2, 16, True),
                                                         (1, 25, 2, 2, 250, False)):
        model = network(stride, kernel, expand, depth)
        assert model.stages(model.frontend(torch.zeros(1, 1, 16000))).shape[-1] == frames
        assert (count_costs(model)["macs"] <= peer) == fits, (stride, kernel, expand, depth)


@pytest.mark.parametrize("preset, strides", [("small", None), ("tiny", ((1, 2), (1, 2)))])
def test_stage_plans_match_real_shapes(preset: str, strides: tuple | None) -> None:
    """A plan's lengths are those of the smallest strides (a searched stride: its smallest candidate)."""
    space = build_space(preset, **({"strides": strides} if strides else {}))
    model = space.freeze({**random_arch(space, 1), **{f"s{i}_stride": 1 for i in range(len(strides or ()))}})
    x = model.frontend(torch.randn(1, 1, 16000))
    for plan, stage in zip(space.stage_plans, model.stages):
        assert x.shape[1:] == (plan.in_channels, plan.in_length)
        x = stage(x)
        assert x.shape[1:] == (plan.out_channels, plan.out_length)


def test_arch_json_round_trip(tmp_path: Path) -> None:
    space = build_space("small")
    arch = random_arch(space, 3)
    path = save_arch(arch, tmp_path / "arch.json", preset="small")
    assert load_arch(path, space) == arch
    assert json.loads(path.read_text())["preset"] == "small"


@pytest.mark.parametrize("identity", [{"frontend": "sinc"}, {"frontend": "mfcc", "num_classes": 5},
                                      {"frontend": "raw", "coarse": True}])
def test_trained_model_reads_back_in_the_space_its_arch_json_names(tmp_path: Path, identity: dict) -> None:
    """A run folder's ``model.pt`` + ``arch.json`` (``nni-kws quantize --model``): the space is rebuilt from the
    file (front end, coarse blocks, classes), so every weight lands where it was and the outputs agree."""
    space = build_space("tiny", **identity)
    model = build_model(random_arch(space, 1), space).eval()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    save_arch(random_arch(space, 1), tmp_path / "arch.json", preset="tiny", **identity)
    loaded = load_trained_model(tmp_path).eval()
    x = torch.randn(2, 1, 16000)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x)) and loaded(x).shape == (2, identity.get("num_classes", 12))


def test_weights_of_another_architecture_are_refused_saying_what_differs(tmp_path: Path) -> None:
    space = build_space("tiny")
    small, large = ({**random_arch(space, 0), "s0_i0_e": e} for e in (1, 2))
    torch.save(build_model(small, space).state_dict(), tmp_path / "model.pt")
    save_arch(large, tmp_path / "arch.json", preset="tiny")
    with pytest.raises(ValueError, match=r"model.pt does not fit .*arch.json: .*size mismatch for stages\.0"):
        load_trained_model(tmp_path)


def test_an_arch_file_of_another_preset_says_so(tmp_path: Path) -> None:
    path = save_arch(random_arch(build_space("small"), 0), tmp_path / "arch.json", preset="small")
    with pytest.raises(InvalidArchitecture, match="labels are another space's: the file names preset 'small'"):
        load_arch(path, build_space("tiny"))


def test_bad_architectures_name_the_label(tmp_path: Path) -> None:
    space = build_space("tiny")
    arch = random_arch(space, 0)
    with pytest.raises(InvalidArchitecture, match="'s0_i0_k' has value 4"):
        validate_arch(space, {**arch, "s0_i0_k": 4})
    with pytest.raises(InvalidArchitecture, match="unknown label 's9_i0_k'"):
        validate_arch(space, {**arch, "s9_i0_k": 3})
    missing = dict(arch)
    del missing["frontend"]
    with pytest.raises(InvalidArchitecture, match="missing label 'frontend'"):
        validate_arch(space, missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidArchitecture, match="bad.json"):
        load_arch(bad, space)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_arch(tmp_path / "nope.json", space)


def test_invalid_space_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="kernel_sizes must be odd"):
        KwsSpace(kernel_sizes=(3, 4))
    with pytest.raises(ValueError, match="frontend must be one of"):
        KwsSpace(frontend="spectrogram")


def test_bake_sinc_keeps_outputs() -> None:
    space = build_space("tiny")
    model = build_model({**random_arch(space, 0), "frontend": "sinc"}, space).eval()
    x = torch.randn(2, 1, 16000)
    before = model(x)
    bake_sinc(model)
    assert not any(isinstance(m, SincConv1d) for m in model.modules())
    torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-5)


def test_log_compression_is_log1p_of_the_magnitude() -> None:
    # Written with log for speed; log1p is the reference, over the range a filterbank output spans.
    x = torch.cat([torch.randn(1000) * scale for scale in (1e-6, 1e-3, 1.0, 1e3)]).requires_grad_()
    reference = x.detach().clone().requires_grad_()
    out, expected = LogCompression()(x), torch.log1p(reference.abs())
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=2e-7)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(x.grad, reference.grad)


def test_search_space_files_are_current() -> None:
    assert write_all(REPO / "search_spaces", check=True) == [], "run `nni-kws search-space` and commit"


def test_search_space_cli_prints_nni_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["search-space", "--print", "--preset", "tiny"]) == 0
    space = json.loads(capsys.readouterr().out)
    assert space["s0_i0_k"] == {"_type": "choice", "_value": [3, 5]}


def test_search_space_cli_writes_the_one_space_asked_for(tmp_path: Path) -> None:
    assert cli_main(["search-space", "--out", str(tmp_path), "--preset", "tiny", "--frontend", "mfcc"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-mfcc.json"]
    assert (tmp_path / "tiny-mfcc.json").read_text() == (REPO / "search_spaces" / "tiny-mfcc.json").read_text()


@pytest.mark.parametrize("name", list(SEARCHED))
def test_searched_architectures_are_the_benchmarks_picks_and_meet_their_budgets(name: str) -> None:
    from nni_kws.cost import CostModel

    searched = SEARCHED[name]
    results, key = searched.source.split(":", 1)
    record = json.loads((REPO / "benchmarks" / "results" / results).read_text())["models"][key]
    assert dict(searched.arch) == record["arch"]  # the literal dict is the architecture the benchmark trained
    model = load_searched_model(name)
    assert sum(p.numel() for p in model.parameters()) == record["costs"]["params"]
    assert CostModel(space_by_name(searched.space)).exact(dict(searched.arch))["macs"] <= searched.budget_macs
    assert model(torch.randn(2, 1, 16000)).shape == (2, 12)
    with pytest.raises(KeyError, match="known: compact-3.3m"):
        load_searched_model("e2e-nas-75k")


@pytest.mark.parametrize("kwargs", [{"n_fft": 640, "hop_length": 320},
                                    {"n_fft": 512, "win_length": 480, "hop_length": 160},
                                    {"n_fft": 512, "win_length": 400, "hop_length": 160, "center": False},
                                    {"n_fft": 256, "hop_length": 128, "power": 1.0, "normalized": True}])
def test_dft_spectrogram_computes_torchaudios_spectrogram(kwargs: dict) -> None:
    import torchaudio

    from nni_kws.space.spectrogram import DftSpectrogram

    x = torch.randn(2, 1, 16000)
    spectrogram = torchaudio.transforms.Spectrogram(**kwargs)
    expected = spectrogram(x)
    torch.testing.assert_close(DftSpectrogram(spectrogram)(x), expected, rtol=0, atol=1e-4 * float(expected.max()))
