"""Compile the fbank Triton kernel for a CUDA target without a GPU (ptxas ships with triton).

Run with TRITON_INTERPRET unset (the interpreter replaces @triton.jit functions):
    python tests/features/compile_fbank_sm90.py [--arch 90]
Prints one line per compiled configuration; exits non-zero on the first failure.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# Option sets covering every constexpr branch: SSAST 16 kHz, 8 kHz mirrored frames with dither,
# energy (htk and not, raw and windowed), magnitude and linear output. FFT sizes >= 1024
# (22.05 kHz and up) also compile but take minutes at BLOCK_FRAMES=16 (register-heavy).
CONFIGS = {
    "ssast16k": dict(htk_compat=True, use_energy=False, window_type="hanning", num_mel_bins=128,
                     frame_shift=10),
    "8k_snipfalse_dither": dict(sample_frequency=8000, num_mel_bins=80, snip_edges=False,
                                dither=1.0),
    "energy_htk_hamming": dict(num_mel_bins=64, use_energy=True, htk_compat=True,
                               window_type="hamming"),
    "energy_kaldi_order": dict(use_energy=True, htk_compat=False, raw_energy=False,
                               energy_floor=0.0),
    "linear_magnitude": dict(use_power=False, use_log_fbank=False, remove_dc_offset=False),
}


def compile_config(name: str, kwargs: dict, arch: int) -> str:
    import triton

    from ssast_fast.features import fbank_triton as ft
    from ssast_fast.features.kaldi import FbankOptions

    o = FbankOptions(**kwargs)
    n1, n2 = ft.fft_split(o.padded_window_size)
    ptr = {"wave_ptr": "*fp32", "len_ptr": "*i32", "nframes_ptr": "*i32", "noise_ptr": "*fp32",
           "win_ptr": "*fp64", "c1_ptr": "*fp64", "s1_ptr": "*fp64", "twr_ptr": "*fp64",
           "twi_ptr": "*fp64", "c2_ptr": "*fp64", "s2_ptr": "*fp64", "mel_ptr": "*fp32",
           "preemph_ptr": "*fp64", "out_ptr": "*fp32"}
    scalars = {"wave_stride": "i32", "f_max": "i32", "noise_frames": "i32",
               "log_energy_floor": "fp32"}
    m_pad = max(16, 1 << (o.num_mel_bins - 1).bit_length())
    consts = dict(W=o.window_size, SHIFT=o.window_shift,
                  OFFSET=0 if o.snip_edges else o.window_size // 2 - o.window_shift // 2,
                  N1=n1, N2=n2, M=o.num_mel_bins, M_PAD=m_pad, COLS=o.num_bins,
                  MEL_COL0=int(o.use_energy and not o.htk_compat),
                  ENERGY_COL=o.num_mel_bins if o.htk_compat else 0,
                  REMOVE_DC=o.remove_dc_offset, RAW_ENERGY=o.raw_energy,
                  USE_ENERGY=o.use_energy, USE_POWER=o.use_power, USE_LOG=o.use_log_fbank,
                  HAS_NOISE=o.dither != 0.0, HAS_ENERGY_FLOOR=o.energy_floor > 0,
                  BF=ft.BLOCK_FRAMES)
    sig = ptr | scalars | {k: "constexpr" for k in consts}
    kernel = ft.fbank_kernel
    # What the JIT infers at launch for torch allocations: 16-byte aligned pointers.
    attrs = {(kernel.arg_names.index(k),): [["tt.divisibility", 16]] for k in ptr}
    src = triton.compiler.ASTSource(fn=kernel, signature=sig, constexprs=consts, attrs=attrs)
    target = triton.backends.compiler.GPUTarget("cuda", arch, 32)
    compiled = triton.compile(src, target=target, options={"num_warps": ft.NUM_WARPS})
    ptx = compiled.asm["ptx"]
    assert ".entry fbank_kernel" in ptx and compiled.asm.get("cubin"), name
    return f"f64 mma={'.f64.f64.f64.f64' in ptx} ptx={len(ptx)} chars"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", type=int, default=90)
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET to compile", file=sys.stderr)
        return 2
    for name, kwargs in CONFIGS.items():
        t = time.time()
        info = compile_config(name, kwargs, args.arch)
        print(f"sm_{args.arch} fbank_kernel[{name}] ok ({time.time() - t:.1f}s) {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
