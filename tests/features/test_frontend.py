"""FrontEnd against the golden SSAST pipeline cases, and SpecAugment in training mode."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from fbank_golden_util import TRITON_MAX_SAMPLES, cases, load
from golden import wav_path
from ssast_fast.features import FrontEnd

PIPE = [c for c in cases() if c["group"] == "pipeline"]


def _frontend(case: dict, **kw) -> FrontEnd:
    p = case["pipeline"]
    return FrontEnd(sample_rate=case["sample_rate"], target_length=p["target_length"],
                    mean=p["norm_mean"], std=p["norm_std"], **kw).eval()


def _check_final(case: dict, out: np.ndarray) -> None:
    p, ref = case["pipeline"], load(case)["final_f64"]
    assert out.shape == tuple(p["final_shape"]) == ref.shape, case["name"]
    atol = max(2 * case["final_f32_vs_f64"]["max_abs"], 1e-4)
    assert np.abs(out - ref).max() <= atol, (case["name"], np.abs(out - ref).max(), atol)
    if p["pad_rows"]:
        assert (out[-p["pad_rows"]:] == np.float32(p["padded_row_value_f32"])).all()


@pytest.mark.parametrize("case", PIPE, ids=lambda c: c["name"])
def test_pipeline_case_from_wav(case, ext_path):
    wav, sr = soundfile.read(wav_path(case), dtype="float32")
    assert sr == case["sample_rate"]
    np.testing.assert_array_equal(wav, load(case)["waveform_raw"])
    out = _frontend(case)(torch.from_numpy(wav)[None])[0].numpy()
    _check_final(case, out)


@pytest.mark.parametrize("backend", ["torch", "cpp", "triton"])
def test_pipeline_batched_with_lengths(backend):
    """The Speech Commands cases as one padded batch with lengths (Triton: the short ones)."""
    batch = [c for c in PIPE if c["pipeline"]["target_length"] == 128
             and (backend != "triton" or c["num_samples"] <= TRITON_MAX_SAMPLES)]
    clips = [torch.from_numpy(load(c)["waveform_raw"]) for c in batch]
    lengths = torch.tensor([len(c) for c in clips])
    waves = torch.zeros(len(clips), int(lengths.max()))
    for i, c in enumerate(clips):
        waves[i, : len(c)] = c
    out = _frontend(batch[0], backend=backend)(waves, lengths)
    for i, c in enumerate(batch):
        _check_final(c, out[i].numpy())


def test_specaugment_training_only():
    case = next(c for c in PIPE if c["name"] == "pipe_sc1s_word")
    wav = torch.from_numpy(load(case)["waveform_raw"])[None].repeat(4, 1)
    fe = _frontend(case, freqm=48, timem=48)
    ref = fe(wav)
    assert torch.equal(ref, fe(wav, generator=torch.Generator().manual_seed(0)))  # eval: no masks
    fe.train()
    out = fe(wav, generator=torch.Generator().manual_seed(0))
    again = fe(wav, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    # torchaudio mask_along_axis per clip: width int(u1 * param), start int(u2 * (size - u1 * param)).
    g = torch.Generator().manual_seed(0)
    expected = ref.clone()
    pad = float(np.float32(case["pipeline"]["padded_row_value_f32"]))
    for axis in (2, 1):  # frequency first, then time, as SSAST applies them
        u = torch.rand((4, 2), generator=g)
        value = u[:, 0] * 48
        start = (u[:, 1] * (128 - value)).long()
        for i in range(4):
            sl = slice(int(start[i]), int(start[i] + value[i].long()))
            if axis == 2:
                expected[i, :, sl] = pad
            else:
                expected[i, sl, :] = pad
    assert torch.equal(out, expected)
    assert not torch.equal(out, ref)


def test_frontend_rejects_bad_settings():
    with pytest.raises(ValueError):
        FrontEnd(target_length=0)
    with pytest.raises(ValueError):
        FrontEnd(freqm=-1)
