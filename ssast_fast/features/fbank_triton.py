"""Fused Triton fbank kernel: one pass from waveform samples to log-mel rows.

A program computes ``BF`` consecutive frames of one clip, entirely in registers:
framing (with mirroring when ``snip_edges`` is false) and dither -> DC removal -> raw energy ->
pre-emphasis -> window -> FFT -> power -> mel -> log -> store. The FFT of length N = N1 * N2
is done as two small matrix products (a "four-step" FFT): with frame sample n = N2*n1 + n2 and
frequency k = k1 + N1*k2,

    Y[n2, k1] = sum_n1 x[N2*n1 + n2] W_N1^(n1 k1)            (tl.dot, [BF*N2, N1] @ [N1, N1])
    X[k1, k2] = sum_n2 Y[n2, k1] W_N^(n2 k1) W_N2^(n2 k2)    (tl.dot, [BF*N1, N2] @ [N2, N2])

so the twiddle tables are tiny (no W x K DFT matrix streamed from memory). Frames are loaded
directly in [n2, n1] order and the mel rows are permuted on the host to X's [k1, k2] order, so
only one transpose happens in registers. The transform runs in float64 (tensor-core DMMA on
sm_80+), which keeps the result within rounding of a float64 reference; the mel product (all
terms positive) and the log are float32. Output is float32.

Supported: FFT sizes that are powers of two >= 256 (every ``round_to_power_of_two`` config at
8 kHz and above); the dispatcher uses the torch path for the others.
"""
from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

from ssast_fast.features.kaldi import FbankOptions, feature_window, mel_banks

BLOCK_FRAMES = 16
NUM_WARPS = 8


def supports(o: FbankOptions) -> bool:
    """Whether the kernel handles this FFT size (power of two, at least 256)."""
    n = o.padded_window_size
    return n >= 256 and n & (n - 1) == 0


def fft_split(n: int) -> tuple[int, int]:
    """N = N1 * N2 with N1 <= N2, both powers of two."""
    n1 = 1 << (int(math.log2(n)) // 2)
    return n1, n // n1


@triton.jit
def _samples(row_ptr, noise_row_ptr, n, start, j, live, HAS_NOISE: tl.constexpr):
    """Frame samples at in-frame offsets ``j`` (mirrored at the clip ends), float64."""
    i = start[:, None, None] + j
    i = tl.where(i < 0, -1 - i, i)
    i = tl.where(i >= n, 2 * n - 1 - i, i)
    i = tl.minimum(tl.maximum(i, 0), n - 1)
    x = tl.load(row_ptr + i, mask=live, other=0.0).to(tl.float64)
    if HAS_NOISE:
        x += tl.load(noise_row_ptr + j, mask=live, other=0.0).to(tl.float64)
    return x


@triton.jit
def fbank_kernel(wave_ptr, len_ptr, nframes_ptr, noise_ptr, win_ptr, c1_ptr, s1_ptr, twr_ptr,
                 twi_ptr, c2_ptr, s2_ptr, mel_ptr, preemph_ptr, out_ptr, wave_stride, f_max,
                 noise_frames, log_energy_floor,
                 W: tl.constexpr, SHIFT: tl.constexpr, OFFSET: tl.constexpr,
                 N1: tl.constexpr, N2: tl.constexpr, M: tl.constexpr, M_PAD: tl.constexpr,
                 COLS: tl.constexpr, MEL_COL0: tl.constexpr, ENERGY_COL: tl.constexpr,
                 REMOVE_DC: tl.constexpr, RAW_ENERGY: tl.constexpr, USE_ENERGY: tl.constexpr,
                 USE_POWER: tl.constexpr, USE_LOG: tl.constexpr, HAS_NOISE: tl.constexpr,
                 HAS_ENERGY_FLOOR: tl.constexpr, BF: tl.constexpr):
    """Grid (cdiv(f_max, BF), B). out: [B, f_max, COLS] float32, zero past each clip's frames."""
    N: tl.constexpr = N1 * N2
    clip = tl.program_id(1).to(tl.int64)
    n = tl.load(len_ptr + clip)
    nf = tl.load(nframes_ptr + clip)
    f = tl.program_id(0) * BF + tl.arange(0, BF)
    valid = f < nf
    i1 = tl.arange(0, N1)
    i2 = tl.arange(0, N2)
    j = i2[None, :, None] + N2 * i1[None, None, :]  # [1, N2, N1]: sample n = N2*n1 + n2
    live = valid[:, None, None] & (j < W)
    start = f * SHIFT - OFFSET
    row = wave_ptr + clip * wave_stride
    noise_row = noise_ptr + (clip * noise_frames + f[:, None, None]) * W
    x = _samples(row, noise_row, n, start, j, live, HAS_NOISE)
    xp = _samples(row, noise_row, n, start, tl.maximum(j - 1, 0), live, HAS_NOISE)
    if REMOVE_DC:
        mean = tl.sum(tl.sum(x, 2), 1) / W
        x = tl.where(live, x - mean[:, None, None], 0.0)
        xp = tl.where(live, xp - mean[:, None, None], 0.0)
    if USE_ENERGY and RAW_ENERGY:
        energy = tl.sum(tl.sum(x * x, 2), 1)
    y = (x - tl.load(preemph_ptr) * xp) * tl.load(win_ptr + j, mask=j < W, other=0.0)
    if USE_ENERGY and not RAW_ENERGY:
        energy = tl.sum(tl.sum(y * y, 2), 1)
    # Stage 1: DFT of length N1 over n1 (real input).
    k1 = tl.arange(0, N1)
    a = tl.reshape(y, (BF * N2, N1))
    c1 = tl.load(c1_ptr + i1[:, None] * N1 + k1[None, :])
    s1 = tl.load(s1_ptr + i1[:, None] * N1 + k1[None, :])
    yr = tl.reshape(tl.dot(a, c1, input_precision="ieee"), (BF, N2, N1))
    yi = tl.reshape(tl.dot(a, s1, input_precision="ieee"), (BF, N2, N1))
    # Twiddles W_N^(n2 k1), then stage 2: DFT of length N2 over n2.
    twr = tl.load(twr_ptr + i2[:, None] * N1 + k1[None, :])[None, :, :]
    twi = tl.load(twi_ptr + i2[:, None] * N1 + k1[None, :])[None, :, :]
    zr = tl.reshape(tl.permute(yr * twr - yi * twi, (0, 2, 1)), (BF * N1, N2))
    zi = tl.reshape(tl.permute(yr * twi + yi * twr, (0, 2, 1)), (BF * N1, N2))
    k2 = tl.arange(0, N2)
    c2 = tl.load(c2_ptr + i2[:, None] * N2 + k2[None, :])
    s2 = tl.load(s2_ptr + i2[:, None] * N2 + k2[None, :])
    xr = tl.dot(zr, c2, input_precision="ieee") - tl.dot(zi, s2, input_precision="ieee")
    xi = tl.dot(zr, s2, input_precision="ieee") + tl.dot(zi, c2, input_precision="ieee")
    power = xr * xr + xi * xi  # [BF*N1, N2], frequency k = k1 + N1*k2
    if not USE_POWER:
        power = tl.sqrt(power)
    spec = tl.reshape(power.to(tl.float32), (BF, N))
    # Mel: rows of the (host-permuted) mel matrix follow the [k1, k2] order of `spec`.
    kk = tl.arange(0, N)
    m = tl.arange(0, M_PAD)
    mel_w = tl.load(mel_ptr + kk[:, None] * M_PAD + m[None, :])
    mel = tl.dot(spec, mel_w, input_precision="ieee")  # [BF, M_PAD]
    if USE_LOG:
        floored = tl.maximum(mel, 1.1920928955078125e-07)
        mel = tl.where(mel > 1.1920928955078125e-07, tl.log(floored), -15.942384719848633)
    out_row = out_ptr + (clip * f_max + f) * COLS
    in_out = f < f_max
    tl.store(out_row[:, None] + MEL_COL0 + m[None, :], tl.where(valid[:, None], mel, 0.0),
             mask=in_out[:, None] & (m < M)[None, :])
    if USE_ENERGY:
        e = energy.to(tl.float32)
        e = tl.where(e > 1.1920928955078125e-07, tl.log(tl.maximum(e, 1.1920928955078125e-07)),
                     -15.942384719848633)
        if HAS_ENERGY_FLOOR:
            e = tl.maximum(e, log_energy_floor)
        tl.store(out_row + ENERGY_COL, tl.where(valid, e, 0.0), mask=in_out)


@functools.lru_cache(maxsize=16)
def _tables(o: FbankOptions, device: torch.device) -> dict[str, torch.Tensor]:
    """Window, twiddles and permuted mel rows for the kernel, on ``device``."""
    n = o.padded_window_size
    n1, n2 = fft_split(n)

    def cis(rows: int, cols: int, period: int) -> tuple[torch.Tensor, torch.Tensor]:
        phase = (torch.arange(rows)[:, None] * torch.arange(cols)[None, :]) % period
        ang = phase.double() * (2 * math.pi / period)
        return torch.cos(ang), -torch.sin(ang)

    c1, s1 = cis(n1, n1, n1)
    twr, twi = cis(n2, n1, n)
    c2, s2 = cis(n2, n2, n2)
    m_pad = max(16, 1 << (o.num_mel_bins - 1).bit_length())
    mel = torch.zeros(n, m_pad)
    mel[: n // 2 + 1, : o.num_mel_bins] = mel_banks(o).T
    k1, k2 = torch.meshgrid(torch.arange(n1), torch.arange(n2), indexing="ij")
    mel = mel[(k1 + n1 * k2).flatten()]  # row k1*N2 + k2 holds frequency k1 + N1*k2
    t = dict(win=feature_window(o, torch.float64), c1=c1, s1=s1, twr=twr, twi=twi, c2=c2, s2=s2,
             mel=mel, preemph=torch.tensor([o.preemphasis_coefficient], dtype=torch.float64))
    return {k: v.contiguous().to(device) for k, v in t.items()}


def fbank_triton(waves: torch.Tensor, lengths: torch.Tensor, o: FbankOptions,
                 noise: torch.Tensor | None) -> torch.Tensor:
    """[B, T] float32 waves, int64 CPU lengths (each >= one window) -> [B, F_max, bins] float32.

    ``noise``: optional scaled dither [B, F_max, window_size]. Rows past each clip's frame
    count are zero.
    """
    if not supports(o):
        raise ValueError(f"triton fbank needs a power-of-two FFT size >= 256, got "
                         f"{o.padded_window_size}")
    device = waves.device
    waves = waves.to(torch.float32).contiguous()
    frames = [o.num_frames(int(n)) for n in lengths.tolist()]
    f_max = max(frames)
    t = _tables(o, device)
    n1, n2 = fft_split(o.padded_window_size)
    out = torch.empty((waves.shape[0], f_max, o.num_bins), dtype=torch.float32, device=device)
    noise_t = (noise.to(torch.float32).contiguous() if noise is not None else waves)
    grid = (triton.cdiv(f_max, BLOCK_FRAMES), waves.shape[0])
    fbank_kernel[grid](
        waves, lengths.to(device=device, dtype=torch.int32),
        torch.tensor(frames, dtype=torch.int32, device=device), noise_t, t["win"], t["c1"],
        t["s1"], t["twr"], t["twi"], t["c2"], t["s2"], t["mel"], t["preemph"], out, waves.stride(0),
        f_max, noise_t.shape[1] if noise is not None else 0, math.log(o.energy_floor) if o.energy_floor > 0 else 0.0,
        W=o.window_size, SHIFT=o.window_shift,
        OFFSET=0 if o.snip_edges else o.window_size // 2 - o.window_shift // 2,
        N1=n1, N2=n2, M=o.num_mel_bins, M_PAD=t["mel"].shape[1], COLS=o.num_bins,
        MEL_COL0=int(o.use_energy and not o.htk_compat),
        ENERGY_COL=o.num_mel_bins if o.htk_compat else 0,
        REMOVE_DC=o.remove_dc_offset, RAW_ENERGY=o.raw_energy, USE_ENERGY=o.use_energy,
        USE_POWER=o.use_power, USE_LOG=o.use_log_fbank, HAS_NOISE=noise is not None,
        HAS_ENERGY_FLOOR=o.energy_floor > 0, BF=BLOCK_FRAMES, num_warps=NUM_WARPS)
    return out
