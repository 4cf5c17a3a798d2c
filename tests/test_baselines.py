"""Peers (hand-designed KWS models), the generic cost counter, and the feature-extraction MAC count."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nni_kws.baselines import BASELINES, baseline_costs, build_baseline, load_trained_baseline
from nni_kws.cost import CostModel
from nni_kws.cost.counter import count_costs
from nni_kws.cost.frontend import frontend_macs, rfft_macs, spectral_settings
from nni_kws.space import build_space, random_arch

# /work/shared/peers.md, [calc] rows: (params, digits of the params figure, body MACs, digits of the MAC figure).
# Params count conv/linear weights + biases + BN affine; MACs are conv + linear only, no front end.
PEERS_MD = {
    "ds-cnn-s": (23_756, 0, 2.66e6, -4),     # MLPerf DS-CNN: "23,756 trainable", "2.66M"
    "tc-resnet8": (65.2e3, -2, 1.52e6, -4),  # "65.2k", "1.52M"
    "sinc-dsconv": (122.0e3, -2, 25.0e6, -5),  # SincConv + DSConv (groups 1): "122.0k", "25.0M"
    "bc-resnet-1": (9_232, 0, 2.48e6, -4),   # "9,232", "2.48M"
}


# ---------------------------------------------------------------- feature extraction, counted independently
def counting_rfft(x: np.ndarray) -> tuple[np.ndarray, int]:
    """2·rfft(x) via a half-size complex radix-2 FFT, counting complex multiplies (see ``rfft_macs``)."""
    count = 0

    def fft(z: np.ndarray) -> np.ndarray:
        nonlocal count
        m = len(z)
        if m == 1:
            return z
        even, odd = fft(z[0::2]), fft(z[1::2])
        twiddled = np.exp(-2j * np.pi * np.arange(m // 2) / m) * odd
        count += m // 2
        return np.concatenate([even + twiddled, even - twiddled])

    n = len(x)
    m = n // 2
    z = fft(x[0::2] + 1j * x[1::2])
    k = np.arange(m)
    zc = np.conj(z[(-k) % m])
    # 2·X[k] = (Z[k] + conj Z[M-k]) - i·W^k·(Z[k] - conj Z[M-k]): one complex multiply per bin k < M
    out = (z + zc) + (-1j * np.exp(-2j * np.pi * k / n)) * (z - zc)
    count += m
    last = 2 * (z[0].real - z[0].imag)
    return np.append(out, last), 4 * count


@pytest.mark.parametrize("n", [8, 64, 512, 1024])
def test_rfft_formula_equals_a_counting_fft(n: int) -> None:
    x = np.random.default_rng(n).standard_normal(n)
    spectrum, macs = counting_rfft(x)
    np.testing.assert_allclose(spectrum, 2 * np.fft.rfft(x), atol=1e-9 * n)
    assert macs == rfft_macs(n) == n * (int(math.log2(n)) + 1)


def test_log_mel_count_by_an_explicit_numpy_pipeline() -> None:
    """BC-ResNet's log-mel front end recomputed in numpy, counting every multiply; same features, same count."""
    module = build_baseline("bc-resnet-1").features
    x = np.random.default_rng(0).standard_normal(16000) * 0.1
    spec = module.melspec.spectrogram
    n_fft, win, hop = spec.n_fft, spec.win_length, spec.hop_length
    padded = np.pad(x, n_fft // 2, mode="reflect")                         # centred frames (torch.stft)
    window = spec.window.double().numpy()
    offset = (n_fft - win) // 2                                            # window centred in n_fft samples
    fb = module.melspec.mel_scale.fb.double().numpy()                      # (n_freqs, n_mels)
    frames, count, feats = 1 + (len(padded) - n_fft) // hop, 0, []
    for f in range(frames):
        frame = np.zeros(n_fft)
        frame[offset:offset + win] = padded[f * hop + offset:f * hop + offset + win] * window
        count += win
        spectrum, macs = counting_rfft(frame)
        spectrum, count = spectrum / 2, count + macs                      # (the 1/2 folds into fb; not counted)
        power = spectrum.real ** 2 + spectrum.imag ** 2
        count += 2 * len(power)
        mel = power @ fb
        count += fb.size
        feats.append(np.log(mel + 1e-6))
        count += len(mel)
    expected = np.stack(feats, axis=1)
    with torch.no_grad():
        got = module(torch.from_numpy(x).float().view(1, 1, -1))[0].double().numpy()
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert frontend_macs(module)["total"] == count


@pytest.mark.parametrize("which", ["space-mfcc", "ds-cnn-s", "tc-resnet8"])
def test_mfcc_matrix_products_equal_torch_flop_counter(which: str) -> None:
    """mel + DCT MACs = half the matmul FLOPs torch counts; the rest of the total is the stated formula."""
    module = (build_space("tiny", frontend="mfcc").frontend.mfcc if which == "space-mfcc"
              else build_baseline(which).features)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = module(torch.randn(1, 16000) if which == "space-mfcc" else torch.randn(1, 1, 16000))
    parts = frontend_macs(module, out)
    assert parts["mel"] + parts["dct"] == counter.get_total_flops() // 2
    s, frames = spectral_settings(module), out.shape[-1]
    assert parts["total"] == frames * (s.win_length + rfft_macs(s.n_fft) + s.n_freqs * (2 if s.power == 2 else 3)
                                       + s.n_freqs * s.n_mels + s.n_mels + s.n_mels * s.n_mfcc)
    if which == "space-mfcc":  # the figure the issue quotes for torch's matmuls: 736,440
        assert (frames, parts["mel"] + parts["dct"]) == (51, 736_440)


# ---------------------------------------------------------------- peers
def test_unknown_baseline_lists_the_names() -> None:
    with pytest.raises(ValueError, match="ds-cnn-s, tc-resnet8, sinc-dsconv, bc-resnet-1"):
        build_baseline("resnet50")


@pytest.mark.parametrize("name", list(BASELINES))
def test_peer_costs_match_peers_md(name: str) -> None:
    model = build_baseline(name)
    costs = count_costs(model)
    params, p_digits, macs, m_digits = PEERS_MD[name]
    assert round(costs["params"], p_digits) == params
    assert round(costs["macs"] - costs["frontend_macs"], m_digits) == macs
    assert (costs["frontend_macs"] > 0) == (name != "sinc-dsconv")         # raw audio has no feature extractor
    assert baseline_costs(name) == {k: float(v) for k, v in costs.items() if v is not None}
    without = count_costs(model, include_frontend=False)
    assert without["macs"] == costs["macs"] - costs["frontend_macs"]
    assert without["frontend_macs"] == costs["frontend_macs"]


def test_ds_cnn_s_by_hand() -> None:
    costs = count_costs(build_baseline("ds-cnn-s"))
    # 49 x 10 MFCC → conv 64 (10 x 4, stride 2) → 25 x 5; 4 x (dw 3 x 3 + pw 64); dense 64 → 12
    body = 25 * 5 * 64 * 10 * 4 + 4 * (25 * 5 * 64 * 9 + 25 * 5 * 64 * 64) + 64 * 12
    assert costs["macs"] - costs["frontend_macs"] == body
    bn = 9 * 2 * 64  # 9 BN layers with gamma and beta
    assert costs["params"] == (64 * 40 + 64) + 4 * (64 * 9 + 64 + 64 * 64 + 64) + bn + (64 * 12 + 12)
    # MLPerf front end: 49 frames of 480 samples, FFT 512 (257 bins), magnitude, 40 mel, log, 10 coefficients
    assert costs["frontend_macs"] == 49 * (480 + 512 * 10 + 257 * 3 + 257 * 40 + 40 + 40 * 10)


@pytest.mark.parametrize("name", list(BASELINES))
def test_peer_trains_on_one_batch(name: str) -> None:
    torch.manual_seed(0)
    model = build_baseline(name, num_classes=12)
    x, y = torch.randn(4, 1, 16000) * 0.1, torch.tensor([0, 3, 7, 11])
    assert model(x).shape == (4, 12)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------- the counter = CostModel.exact on our own models
@pytest.mark.parametrize("preset,kwargs", [("tiny", {}), ("small", {}), ("tiny", {"frontend": "mfcc"}),
                                           ("tiny", {"coarse": True})])
def test_counter_equals_cost_model(preset: str, kwargs: dict) -> None:
    cm = CostModel(build_space(preset, **kwargs))
    for seed in range(4):
        arch = random_arch(cm.space, seed)
        model = cm.space.freeze(arch)
        ours, theirs = count_costs(model, bits=6, act_bits=8), cm.exact(arch, bits=6, act_bits=8)
        for key in ("params", "macs", "frontend_macs", "ops", "weight_bytes", "peak_activation_bytes"):
            assert ours[key] == theirs[key], (preset, kwargs, seed, key)


# ---------------------------------------------------------------- nni-kws train --baseline
def test_cli_train_baseline(tiny_gsc, tmp_path, capsys, count_accuracy, tiny_test_clips) -> None:
    from nni_kws.cli import main
    from nni_kws.files import load_torch

    out = tmp_path / "peer"
    assert main(["train", "--baseline", "tc-resnet8", "--data", str(tiny_gsc), "--no-real-test", "--out", str(out),
                 "--train-epochs", "1", "--batch-size", "16", "--no-progress"]) == 0
    res = json.loads((out / "train" / "result.json").read_text())
    model = build_baseline("tc-resnet8")
    model.load_state_dict(load_torch(out / "train" / "model.pt"))         # the trained peer's weights
    loaded = load_trained_baseline(out / "train")                         # as Python users read it back
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert load_trained_baseline(tmp_path) is None                        # no peer there
    expected = count_costs(model)
    assert res["baseline"] == "tc-resnet8" and res["arch"] is None
    assert res["test_acc"] == pytest.approx(count_accuracy(model, tiny_test_clips))
    assert {k: res["costs"][k] for k in ("params", "macs", "frontend_macs")} == \
        {k: expected[k] for k in ("params", "macs", "frontend_macs")}
    capsys.readouterr()
    assert main(["train", "--baseline", "ds-cnn-s", "--arch", "a.json", "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
    # the trained peer quantizes like a searched network: its MFCC front end and all 1-D layers go to ONNX
    assert main(["quantize", str(out / "train"), "--data", str(tiny_gsc), "--weight-budget", "4", "--act-budget", "4",
                 "--epochs", "1", "--out", str(tmp_path / "q"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "q" / "quant_report.json").read_text())
    assert report["avg_bits_per_weight"] <= 4 and report["onnx"]["agreement"] == 1.0
    assert sum(layer["weight_numel"] for layer in report["layers"]) == \
        sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear)))


def test_a_peer_with_2d_convolutions_is_refused_by_the_quantizer() -> None:
    """DS-CNN-S's Conv2d layers would stay float while the report counted the classifier's bits only."""
    from nni_kws.quant import prepare_model

    with pytest.raises(ValueError, match="2-D/3-D convolutions"):
        prepare_model(build_baseline("ds-cnn-s"))


def test_peers_json_is_current(tmp_path) -> None:
    """benchmarks/results/peers.json is what benchmarks/peer_costs.py computes now (no stale figures)."""
    import runpy
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = runpy.run_path(str(root / "benchmarks" / "peer_costs.py"))
    assert script["main"](["--out", str(tmp_path / "peers.json")]) == 0
    fresh = json.loads((tmp_path / "peers.json").read_text())
    assert fresh == json.loads((root / "benchmarks" / "results" / "peers.json").read_text())
    assert fresh["peers"]["ds-cnn-s"]["macs"] == count_costs(build_baseline("ds-cnn-s"))["macs"]


def test_cli_cost_exclude_frontend(tmp_path, capsys) -> None:
    from nni_kws.cli import main
    from nni_kws.space import save_arch

    space = build_space("tiny", frontend="mfcc")
    path = save_arch(random_arch(space, 0), tmp_path / "arch.json", preset="tiny", frontend="mfcc")
    capsys.readouterr()
    assert main(["cost", str(path)]) == 0
    full = json.loads(capsys.readouterr().out)
    assert main(["cost", str(path), "--exclude-frontend"]) == 0
    without = json.loads(capsys.readouterr().out)
    assert full["frontend_macs"] == without["frontend_macs"] == frontend_macs(space.frontend.mfcc)["total"] > 0
    assert full["macs"] - without["macs"] == full["frontend_macs"]


def test_utterance_norm_removes_a_fixed_channel_gain() -> None:
    """A gain is an additive constant on log features: per-utterance mean normalisation cancels it."""
    from nni_kws.baselines import SpectralFeatures

    x = torch.randn(2, 1, 16000) * 0.1
    plain = SpectralFeatures(512, 480, 320, n_mels=40, n_mfcc=10, power=1.0, tf_frames=True).eval()
    cmn = SpectralFeatures(512, 480, 320, n_mels=40, n_mfcc=10, power=1.0, tf_frames=True, utterance_norm="mean").eval()
    cmvn = SpectralFeatures(512, 480, 320, n_mels=40, n_mfcc=10, power=1.0, tf_frames=True,
                            utterance_norm="meanvar").eval()
    ref = plain(x)
    assert torch.allclose(cmn(x), ref - ref.mean(-1, keepdim=True), atol=1e-5)
    assert torch.allclose(cmn(3.0 * x), cmn(x), atol=1e-3) and not torch.allclose(plain(3.0 * x), ref, atol=1e-1)
    assert torch.allclose(cmvn(x).std(-1), torch.ones(2, 10), atol=1e-3)
    with pytest.raises(ValueError, match="utterance_norm"):
        SpectralFeatures(512, 480, 320, n_mels=40, utterance_norm="cepstral")


def test_spec_masks_only_in_training() -> None:
    from nni_kws.baselines import SpectralFeatures

    torch.manual_seed(0)
    x = torch.randn(4, 1, 16000) * 0.1
    masked = SpectralFeatures(512, 480, 320, n_mels=40, tf_frames=True, spec_masks=(2, 8, 2, 6))
    ref = SpectralFeatures(512, 480, 320, n_mels=40, tf_frames=True)
    assert torch.equal(masked.eval()(x), ref(x))
    train = masked.train()(x)
    # masked entries hold the masks' fill value 0; every other entry is unchanged
    changed = train != ref(x)
    assert changed.any() and torch.all(train[changed] == 0)
    model = build_baseline("ds-cnn-s", utterance_norm="mean", spec_masks=(1, 4, 1, 4))
    assert model.features.utterance_norm == "mean" and model(x).shape == (4, 12)
