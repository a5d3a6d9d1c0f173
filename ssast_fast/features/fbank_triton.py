"""Triton fbank: two kernels from waveform samples to log-mel rows.

1. :func:`spectrum_kernel`, ``BF`` consecutive frames of one clip per program, in registers:
   framing (with mirroring when ``snip_edges`` is false) and dither -> DC removal -> energy ->
   pre-emphasis -> window -> FFT -> power; writes the half spectrum (float32) and, with
   ``use_energy``, the log-energy column of the output. The FFT of length N = N1 * N2 is done as
   two small matrix products (a "four-step" FFT): with frame sample n = N2*n1 + n2 and frequency
   k = k1 + N1*k2,

       Y[n2, k1] = sum_n1 x[N2*n1 + n2] W_N1^(n1 k1)            (tl.dot, [BF*N2, N1] @ [N1, N1])
       X[k1, k2] = sum_n2 Y[n2, k1] W_N^(n2 k1) W_N2^(n2 k2)    (tl.dot, [BF*N1, N2] @ [N2, K2])

   so the twiddle tables are tiny (no W x K DFT matrix streamed from memory). Only the columns
   k2 < K2 = max(N2/2, 16) are computed: they hold every frequency below Nyquist (the Nyquist bin
   has mel weight 0). The spectrum is written in X's [k1, k2] order and the mel rows are permuted
   to it on the host. The transform runs in float64 (tensor-core DMMA on sm_80+), which keeps the
   result within rounding of a float64 reference.
2. :func:`mel_log_kernel`, a tile of frames x mel bins per program: the mel product as one
   float32 matmul (IEEE dots; all terms positive) over the half spectrum in K chunks, the log
   floor, the store into the output (zero rows past each clip's frames).

Why two kernels (docs/kernels_gpu.md has the numbers): a mel product inside the FFT kernel needs
``tl.dot``'s 16 rows, i.e. 16 frames per program, whose float64 FFT tiles ([16, N] per operand)
spill and, with the [N, bins] mel tile, need 295-655 KB of shared memory; with the spectrum
written out (float32, N/2 per frame: about 2x the output's bytes, an L2-resident round trip) the
FFT kernel holds BF * N = 2048 samples per program and the mel product is a plain tiled matmul.

Every size, flag and option is a runtime argument, not a constexpr: each FFT size compiles to
one spectrum kernel and a single mel kernel serves every setting, so the resource report
(``benchmarks/compile_report.py``) covers every option combination by construction.

Supported (:func:`supports`): FFT sizes 256, 512, 1024, 2048 (8 kHz to 48 kHz at 25 ms with
``round_to_power_of_two``), any number of mel bins; the dispatcher uses the torch path otherwise.
"""
from __future__ import annotations

import functools
import math

import torch

from ssast_fast.features.kaldi import FbankOptions, feature_window, mel_banks
# Triton is optional: without it the kernels are not defined and supports() is False (the
# dispatcher, ssast_fast.features.dispatch.resolve_backend, checks Triton and the device).
from ssast_fast.ops._triton_common import HAS_TRITON, tl, triton

#: FFT sizes the spectrum kernel is compiled (and resource-checked) for.
FFT_SIZES = (256, 512, 1024, 2048)
#: Samples per spectrum-kernel program: BF = FRAME_SAMPLES // N frames.
FRAME_SAMPLES = 2048
SPECTRUM_WARPS = 4
#: The mel kernel's tile: (frames, mel bins, spectrum chunk), warps, pipeline stages.
MEL_BLOCK = (64, 64, 32)
MEL_WARPS = 8
MEL_STAGES = 2

# Sizes, strides and flags are not specialized on (no "== 1" / "% 16" variants).
_SPECTRUM_INTS = ["wave_stride", "f_max", "noise_frames", "W", "SHIFT", "OFFSET", "remove_dc",
                  "raw_energy", "use_power", "energy_col", "cols"]
_MEL_INTS = ["rows", "f_max", "M", "NH", "M_PAD", "cols", "mel_col0", "use_log"]


def supports(o: FbankOptions) -> bool:
    """Whether the Triton kernels take these options: Triton is importable and their FFT size is
    one the kernels are compiled and resource-checked for (:data:`FFT_SIZES`). (The device and
    Triton's interpreter are the dispatcher's concern.)"""
    return HAS_TRITON and o.padded_window_size in FFT_SIZES


def fft_split(n: int) -> tuple[int, int]:
    """N = N1 * N2 with N1 <= N2, both powers of two."""
    n1 = 1 << (int(math.log2(n)) // 2)
    return n1, n // n1


def spectrum_geometry(n: int) -> dict[str, int]:
    """The spectrum kernel's constexprs for FFT size ``n``: N1, N2, K2 (stage-2 columns), BF
    (frames per program), KC (stage-2 columns per step)."""
    n1, n2 = fft_split(n)
    return dict(N1=n1, N2=n2, K2=max(n2 // 2, 16), BF=max(1, FRAME_SAMPLES // n), KC=16)


if HAS_TRITON:
    @triton.jit
    def _samples(row_ptr, noise_row_ptr, n, start, j, live, has_noise):
        """Frame samples at in-frame offsets ``j`` (mirrored at the clip ends), float64."""
        i = start[:, None, None] + j
        i = tl.where(i < 0, -1 - i, i)
        i = tl.where(i >= n, 2 * n - 1 - i, i)
        i = tl.minimum(tl.maximum(i, 0), n - 1)
        x = tl.load(row_ptr + i, mask=live, other=0.0).to(tl.float64)
        x += tl.load(noise_row_ptr + j, mask=live & has_noise, other=0.0).to(tl.float64)
        return x

    @triton.jit
    def _log_floor(x):
        """``log(max(x, eps))`` with the float32 floor value exactly where ``x <= eps``."""
        return tl.where(x > 1.1920928955078125e-07, tl.log(tl.maximum(x, 1.1920928955078125e-07)),
                        -15.942384719848633)

    @triton.jit(do_not_specialize=_SPECTRUM_INTS)
    def spectrum_kernel(wave_ptr, len_ptr, nframes_ptr, noise_ptr, win_ptr, c1_ptr, s1_ptr, twr_ptr,
                        twi_ptr, c2_ptr, s2_ptr, preemph_ptr, power_ptr, out_ptr, wave_stride, f_max,
                        noise_frames, W, SHIFT, OFFSET, remove_dc, raw_energy, use_power,
                        energy_col, cols, log_energy_floor,
                        N1: tl.constexpr, N2: tl.constexpr, K2: tl.constexpr, BF: tl.constexpr,
                        KC: tl.constexpr):
        """Grid (B * cdiv(f_max, BF),), the frame blocks of one clip adjacent.

        power: [B, f_max, N1 * K2] float32, |X|^2 (|X| unless use_power) in [k1, k2] order.
        out: [B, f_max, cols] float32; column ``energy_col`` (if >= 0) gets the log energy, floored
        at ``log_energy_floor``, zero past each clip's frames. Flags are 0/1 ints.
        """
        N: tl.constexpr = N1 * N2
        n_blocks = tl.cdiv(f_max, BF)
        pid = tl.program_id(0)
        clip = (pid // n_blocks).to(tl.int64)
        n = tl.load(len_ptr + clip)
        nf = tl.load(nframes_ptr + clip)
        f = (pid % n_blocks) * BF + tl.arange(0, BF)
        valid = f < nf
        i1 = tl.arange(0, N1)
        i2 = tl.arange(0, N2)
        j = i2[None, :, None] + N2 * i1[None, None, :]  # [1, N2, N1]: sample n = N2*n1 + n2
        live = valid[:, None, None] & (j < W)
        start = f * SHIFT - OFFSET
        row = wave_ptr + clip * wave_stride
        noise_row = noise_ptr + (clip * noise_frames + f[:, None, None]) * W
        has_noise = noise_frames > 0
        x = _samples(row, noise_row, n, start, j, live, has_noise)
        xp = _samples(row, noise_row, n, start, tl.maximum(j - 1, 0), live, has_noise)
        mean = tl.sum(tl.sum(x, 2), 1) / W * remove_dc
        x = tl.where(live, x - mean[:, None, None], 0.0)
        xp = tl.where(live, xp - mean[:, None, None], 0.0)
        y = (x - tl.load(preemph_ptr) * xp) * tl.load(win_ptr + j, mask=j < W, other=0.0)
        energy = tl.where(raw_energy != 0, tl.sum(tl.sum(x * x, 2), 1), tl.sum(tl.sum(y * y, 2), 1))
        # Stage 1: DFT of length N1 over n1 (real input).
        k1 = tl.arange(0, N1)
        a = tl.reshape(y, (BF * N2, N1))
        c1 = tl.load(c1_ptr + i1[:, None] * N1 + k1[None, :])
        s1 = tl.load(s1_ptr + i1[:, None] * N1 + k1[None, :])
        yr = tl.reshape(tl.dot(a, c1, input_precision="ieee"), (BF, N2, N1))
        yi = tl.reshape(tl.dot(a, s1, input_precision="ieee"), (BF, N2, N1))
        # Twiddles W_N^(n2 k1), then stage 2: DFT of length N2 over n2, columns k2 < K2 only.
        twr = tl.load(twr_ptr + i2[:, None] * N1 + k1[None, :])[None, :, :]
        twi = tl.load(twi_ptr + i2[:, None] * N1 + k1[None, :])[None, :, :]
        zr = tl.reshape(tl.permute(yr * twr - yi * twi, (0, 2, 1)), (BF * N1, N2))
        zi = tl.reshape(tl.permute(yr * twi + yi * twr, (0, 2, 1)), (BF * N1, N2))
        r = tl.arange(0, BF * N1)  # row r of zr, zi: frame r // N1, k1 = r % N1
        frame = (pid % n_blocks) * BF + r // N1
        dst = power_ptr + ((clip * f_max + frame) * (N1 * K2) + (r % N1) * K2)[:, None]
        for c in range(0, K2, KC):  # KC columns at a time: the twiddle operands stay small
            k2 = c + tl.arange(0, KC)
            c2 = tl.load(c2_ptr + i2[:, None] * K2 + k2[None, :])
            s2 = tl.load(s2_ptr + i2[:, None] * K2 + k2[None, :])
            xr = tl.dot(zr, c2, input_precision="ieee") - tl.dot(zi, s2, input_precision="ieee")
            xi = tl.dot(zr, s2, input_precision="ieee") + tl.dot(zi, c2, input_precision="ieee")
            power = xr * xr + xi * xi  # [BF*N1, KC]
            power = tl.where(use_power != 0, power, tl.sqrt(power))
            tl.store(dst + k2[None, :], power.to(tl.float32), mask=(frame < f_max)[:, None])
        e = tl.maximum(_log_floor(energy.to(tl.float32)), log_energy_floor)
        tl.store(out_ptr + (clip * f_max + f) * cols + energy_col, tl.where(valid, e, 0.0),
                 mask=(f < f_max) & (energy_col >= 0))

    @triton.jit(do_not_specialize=_MEL_INTS)
    def mel_log_kernel(power_ptr, mel_ptr, nframes_ptr, out_ptr, rows, f_max, M, NH, M_PAD, cols,
                       mel_col0, use_log,
                       BLOCK_F: tl.constexpr, BLOCK_MEL: tl.constexpr, BLOCK_K: tl.constexpr):
        """Grid (cdiv(rows, BLOCK_F), cdiv(M, BLOCK_MEL)); rows = B * f_max.

        out[b, f, mel_col0 + m] = log(max(sum_k power[b, f, k] mel[k, m], eps)) (the linear sum
        unless use_log) for f < nframes[b], 0 for the other rows. mel: [NH, M_PAD] float32, zero
        past M; NH a multiple of BLOCK_K.
        """
        r = tl.program_id(0).to(tl.int64) * BLOCK_F + tl.arange(0, BLOCK_F)
        m = tl.program_id(1) * BLOCK_MEL + tl.arange(0, BLOCK_MEL)
        k = tl.arange(0, BLOCK_K)
        row_ok = r < rows
        acc = tl.zeros([BLOCK_F, BLOCK_MEL], dtype=tl.float32)
        for k0 in range(0, NH, BLOCK_K):
            p = tl.load(power_ptr + r[:, None] * NH + (k0 + k)[None, :], mask=row_ok[:, None],
                        other=0.0)
            w = tl.load(mel_ptr + (k0 + k)[:, None] * M_PAD + m[None, :])
            acc = tl.dot(p, w, acc, input_precision="ieee")
        acc = tl.where(use_log != 0, _log_floor(acc), acc)
        nf = tl.load(nframes_ptr + r // f_max, mask=row_ok, other=0)
        acc = tl.where(((r % f_max) < nf)[:, None], acc, 0.0)
        tl.store(out_ptr + r[:, None] * cols + mel_col0 + m[None, :], acc,
                 mask=row_ok[:, None] & (m < M)[None, :])


@functools.lru_cache(maxsize=16)
def _tables(o: FbankOptions, device: torch.device) -> dict[str, torch.Tensor]:
    """Window, twiddles and permuted, padded mel rows for the kernels, on ``device``."""
    n = o.padded_window_size
    g = spectrum_geometry(n)
    n1, n2, k2 = g["N1"], g["N2"], g["K2"]

    def cis(rows: int, cols: int, period: int) -> tuple[torch.Tensor, torch.Tensor]:
        phase = (torch.arange(rows)[:, None] * torch.arange(cols)[None, :]) % period
        ang = phase.double() * (2 * math.pi / period)
        return torch.cos(ang), -torch.sin(ang)

    c1, s1 = cis(n1, n1, n1)
    twr, twi = cis(n2, n1, n)
    c2, s2 = cis(n2, k2, n2)
    banks = mel_banks(o)  # [M, n/2 + 1]
    if bool(banks[:, n // 2].any()):  # kaldi.mel_banks pads the Nyquist bin with 0
        raise AssertionError("the Nyquist bin must have mel weight 0")
    m_pad = -(-o.num_mel_bins // MEL_BLOCK[1]) * MEL_BLOCK[1]
    freq = (torch.arange(n1)[:, None] + n1 * torch.arange(k2)[None, :]).flatten()  # [k1, k2]
    mel = torch.zeros(n1 * k2, m_pad)
    below = freq < n // 2
    mel[below, : o.num_mel_bins] = banks[:, freq[below]].T
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
        raise ValueError(f"triton fbank needs a power-of-two FFT size in {FFT_SIZES}, got "
                         f"{o.padded_window_size}")
    device = waves.device
    waves = waves.to(torch.float32).contiguous()
    if waves.data_ptr() % 16:  # the kernels are compiled for 16-byte aligned pointers
        waves = waves.clone()
    frames = [o.num_frames(int(n)) for n in lengths.tolist()]
    f_max, batch = max(frames), waves.shape[0]
    t = _tables(o, device)
    g = spectrum_geometry(o.padded_window_size)
    nh = g["N1"] * g["K2"]
    out = torch.empty((batch, f_max, o.num_bins), dtype=torch.float32, device=device)
    power = torch.empty((batch, f_max, nh), dtype=torch.float32, device=device)
    nframes = torch.tensor(frames, dtype=torch.int32, device=device)
    noise_t = noise.to(torch.float32).contiguous() if noise is not None else waves
    if noise_t.data_ptr() % 16:
        noise_t = noise_t.clone()
    energy_col = (o.num_mel_bins if o.htk_compat else 0) if o.use_energy else -1
    floor = math.log(o.energy_floor) if o.energy_floor > 0 else -math.inf
    spectrum_kernel[(batch * triton.cdiv(f_max, g["BF"]),)](
        waves, lengths.to(device=device, dtype=torch.int32), nframes, noise_t, t["win"],
        t["c1"], t["s1"], t["twr"], t["twi"], t["c2"], t["s2"], t["preemph"], power, out,
        waves.stride(0), f_max, noise_t.shape[1] if noise is not None else 0, o.window_size,
        o.window_shift, 0 if o.snip_edges else o.window_size // 2 - o.window_shift // 2,
        int(o.remove_dc_offset), int(o.raw_energy), int(o.use_power), energy_col, o.num_bins,
        floor, **g, num_warps=SPECTRUM_WARPS)
    bf, bm, bk = MEL_BLOCK
    mel_log_kernel[(triton.cdiv(batch * f_max, bf), triton.cdiv(o.num_mel_bins, bm))](
        power, t["mel"], nframes, out, batch * f_max, f_max, o.num_mel_bins, nh,
        t["mel"].shape[1], o.num_bins, int(o.use_energy and not o.htk_compat),
        int(o.use_log_fbank), BLOCK_F=bf, BLOCK_MEL=bm, BLOCK_K=bk, num_warps=MEL_WARPS,
        num_stages=MEL_STAGES)
    return out
