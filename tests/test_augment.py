"""The data engine's signal operations do what they say: SNR, masks, speed, rooms (RT60), channel effects."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nni_kws.data import SpeechCommands, TrainAugment, load_clip
from nni_kws.data.acoustics import apply_channel, apply_room, room_impulse_response, speed_change
from nni_kws.data.augment import band_stop, mix_at_snr, rms, speed_perturb, time_mask

SR = 16000


def _tone(f: float, n: int = SR, amp: float = 0.5) -> torch.Tensor:
    return (amp * torch.sin(2 * torch.pi * f * torch.arange(n, dtype=torch.float64) / SR)).float().unsqueeze(0)


def _peak_hz(x: np.ndarray | torch.Tensor) -> float:
    x = np.asarray(x, dtype=np.float64).ravel()
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / SR)[spec.argmax()])


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 12.5, 30.0])
def test_mix_at_snr(snr_db):
    x = _tone(440)
    noise = torch.from_numpy(np.random.default_rng(0).normal(0, 0.3, (1, SR))).float()
    mixed = mix_at_snr(x, noise, snr_db)
    measured = 20 * np.log10(rms(x) / rms(mixed - x))
    assert measured == pytest.approx(snr_db, abs=0.01)
    assert torch.equal(mix_at_snr(torch.zeros(1, SR), noise, 10.0), noise)  # no signal: noise alone


def test_time_mask_and_band_stop():
    x = _tone(440)
    masked = time_mask(x, 1000, 1600)
    assert masked[0, 1000:2600].abs().max() == 0 and torch.equal(masked[0, 2600:], x[0, 2600:])
    assert torch.equal(masked[0, :1000], x[0, :1000])
    two = _tone(500) + _tone(3000)
    spec = lambda y: np.abs(np.fft.rfft(y[0].double().numpy()))  # noqa: E731 - 1 Hz bins
    out = spec(band_stop(two, 2800, 400))
    before = spec(two)
    assert out[3000] < 1e-6 * before[3000]  # the tone in the band is gone
    assert out[500] == pytest.approx(before[500], rel=1e-4)  # the one outside is untouched


@pytest.mark.parametrize("factor", [0.9, 1.12])
def test_speed_perturbation_scales_frequency(factor):
    x = _tone(1000)
    assert _peak_hz(speed_perturb(x, factor)[0, 4000:12000]) == pytest.approx(1000 * factor, rel=0.01)
    y = speed_change(x[0].double().numpy(), factor)
    assert y.size == pytest.approx(SR / factor, rel=0.03)
    assert _peak_hz(y) == pytest.approx(1000 * factor, rel=0.025)


@pytest.mark.parametrize("rt60", [0.25, 0.5, 0.8])
def test_room_impulse_response_rt60_and_length(rt60):
    import pyroomacoustics as pra

    rir = room_impulse_response(np.random.default_rng(1), rt60)
    assert rir.size == int(rt60 * SR) and np.abs(rir).max() == pytest.approx(1.0)
    assert pra.experimental.measure_rt60(rir, fs=SR, decay_db=30) == pytest.approx(rt60, rel=0.15)
    x = np.zeros(SR)
    x[100] = 1.0  # an impulse through the room is the RIR itself (scaled to the input peak)
    y = apply_room(x, rir)
    np.testing.assert_allclose(y[100:100 + rir.size], rir[: SR - 100] / np.abs(rir).max(), atol=1e-9)


def test_room_impulse_response_does_not_depend_on_pyroomacoustics_threads():
    import pyroomacoustics as pra

    threads = pra.constants.get("num_threads")
    try:
        rirs = []
        for n in (1, 3):  # pyroomacoustics' own default is the core count: other machines, other sums
            pra.constants.set("num_threads", n)
            rirs.append(room_impulse_response(np.random.default_rng(2), 0.5))
    finally:
        pra.constants.set("num_threads", threads)
    assert rirs[0].tobytes() == rirs[1].tobytes()


def test_channel_effects():
    x = (_tone(100)[0] + _tone(1000)[0] + _tone(7900)[0]).double().numpy()
    seen = set()
    for seed in range(12):
        y, applied = apply_channel(x, np.random.default_rng(seed))
        low, high = applied["band_hz"]
        assert 50 <= low <= 400 and 2500 <= high <= 7500
        spec_x, spec_y = np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(y))
        g = 10 ** (applied["gain_db"] / 20)
        if not {"clip_drive", "mu_law"} & set(applied):  # linear channel: a band-pass times the gain
            assert spec_y[1000] == pytest.approx(g * spec_x[1000], rel=0.15)
            if high < 6500:  # an octave-ish past the 4th-order low-pass edge: attenuated
                assert spec_y[7900] < 0.1 * g * spec_x[7900]
            if low > 200:
                assert spec_y[100] < 0.2 * g * spec_x[100]
        if "clip_drive" in applied and "telephone" not in applied and "mu_law" not in applied:
            assert np.mean(np.isclose(np.abs(y), np.abs(y).max(), rtol=1e-6)) > 0.01  # a flat top
        seen |= set(applied)
    assert {"clip_drive", "mu_law", "telephone"} <= seen


def test_train_augment_switches(tiny_gsc):
    plain = SpeechCommands(tiny_gsc, "training", augmentation=TrainAugment(time_shift_ms=0, noise_prob=0))
    clean = load_clip(plain.files[0])
    assert torch.equal(plain[0][0], clean)  # every part off: the clip itself
    masked = SpeechCommands(tiny_gsc, "training", augmentation=TrainAugment(time_shift_ms=0, noise_prob=0,
                                                                             time_masks=1, mask_prob=1.0))
    x = masked[0][0]
    assert (x == 0).sum() > (clean == 0).sum() and torch.equal(x[x != 0], clean[x != 0])
    snr = SpeechCommands(tiny_gsc, "training", augmentation=TrainAugment(time_shift_ms=0, noise_prob=1.0,
                                                                          noise_snr_db=(6.0, 6.0)))
    y = snr[0][0]
    assert 20 * np.log10(rms(clean) / rms(y - clean)) == pytest.approx(6.0, abs=0.3)  # clamping moves it a little
    strong = SpeechCommands(tiny_gsc, "training", augmentation=TrainAugment.strong())
    z = strong[0][0]
    assert z.shape == (1, SR) and z.abs().max() <= 1 and not torch.equal(z, clean)
    with pytest.raises(ValueError, match="speed"):
        TrainAugment(speed=(1.2, 0.9))
