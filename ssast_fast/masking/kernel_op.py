"""The batched mask op ``ssast_fast::masks`` (CPU and CUDA) and the CUDA kernel's self-check
(:func:`check_cuda_kernel`; when it runs and what a failure does: :mod:`ssast_fast.masking.dispatch`).

Both devices run the shared core ``csrc/masking/mask_core.h``, the reference algorithm: on the
CPU ``_C.mask_fast`` (parallel over samples), on CUDA the kernel of ``_C_cuda`` (one sample per
thread). Sample b of a call uses xoshiro stream b of one 62-bit seed:

- ``seed >= 0``, default mode: that seed, drawn by the caller from torch's CPU generator
  (``draw_seed``). The same seed gives the same masks on the CPU and on the GPU.
- ``seed == -1``, graph-safe mode: the seed is drawn inside the op. On CUDA it is
  ``seed_from_philox(seed, offset)`` of the Philox state of ``generator`` (default: the device's
  default CUDA generator), read inside the kernel: a launch captured in a CUDA graph draws new
  masks at each replay, and the host core with the same (seed, offset) gives the same masks.
  On the CPU the seed is drawn from ``generator`` (default: torch's CPU generator) when the op runs.

The op has a fake kernel and the ``nondeterministic_seeded`` tag (never merged or folded by
torch.compile); it never synchronises with the device.
"""
from __future__ import annotations

from typing import Optional

import torch

from ssast_fast import _ext

_lib = torch.library.Library("ssast_fast", "FRAGMENT")
_lib.define(
    "masks(int batch, int n_patches, int mask_size, int t_dim, bool cluster, int seed, Device device, "
    "Generator? generator=None) -> Tensor",
    tags=(torch.Tag.nondeterministic_seeded,),
)


def draw_seed(generator: torch.Generator | None = None) -> int:
    """One 62-bit stream seed from a CPU generator (default: torch's global one)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def philox_seed(seed: int, offset: int) -> int:
    """The stream seed the kernel uses in graph-safe mode for a Philox state (seed, offset)."""
    return _ext.get().seed_from_philox(seed, offset)


def in_graph() -> bool:
    """Inside a torch.compile trace or a CUDA graph capture: no host sync, no self-check here."""
    return torch.compiler.is_compiling() or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def device_index(device: torch.device) -> int:
    """The index of a CUDA device (the current device for a bare ``"cuda"``)."""
    return device.index if device.index is not None else torch.cuda.current_device()


def _masks(batch: int, n_patches: int, mask_size: int, t_dim: int, cluster: bool, seed: int, device: torch.device,
           generator: torch.Generator | None = None) -> torch.Tensor:
    t_dim = t_dim if cluster else 1  # unused for frames
    if device.type == "cuda":
        cuda = _ext.get_cuda()
        if cuda is None:
            raise RuntimeError("ssast_fast::masks on CUDA needs the CUDA extension ssast_fast._C_cuda (not built)")
        return cuda.masks(batch, n_patches, mask_size, t_dim, cluster, seed, device_index(device), generator)
    host = _ext.get()
    if device.type != "cpu" or host is None:
        raise RuntimeError(f"ssast_fast::masks runs on CPU (with ssast_fast._C) or CUDA, got device {device}")
    if seed < 0:
        seed = draw_seed(generator)
    return host.mask_fast(seed, batch, n_patches, mask_size, t_dim, cluster)


_lib.impl("masks", _masks, "CompositeExplicitAutograd")


@torch.library.register_fake("ssast_fast::masks")
def _masks_fake(batch, n_patches, mask_size, t_dim, cluster, seed, device, generator=None):
    return torch.empty(batch, mask_size, dtype=torch.long, device=device)


# Self-check settings (n, M, t_dim, cluster): ascending and hashed set order, both frame algorithms.
_CHECKS = ((512, 400, 64, True), (1212, 100, 101, True), (1212, 250, 101, True), (512, 400, 1, False),
           (2048, 10, 1, False))
_CHECK_SEED = 20220222


def check_cuda_kernel(device: torch.device) -> Optional[str]:
    """The CUDA kernel's self-check on ``device`` (with an index): None when it gives the host
    core's masks in both seeding modes, else why not. Run once per device by
    :func:`ssast_fast.masking.dispatch.resolve_backend` (:mod:`ssast_fast.ops.dispatch`)."""
    cuda, host = _ext.get_cuda(), _ext.get()
    index = device.index
    for n, m, t_dim, cluster in _CHECKS:
        want = host.mask_fast(_CHECK_SEED, 5, n, m, t_dim, cluster)
        if not torch.equal(cuda.masks(5, n, m, t_dim, cluster, _CHECK_SEED, index, None).cpu(), want):
            return f"different masks for {n}/{m}/{t_dim} {'patch' if cluster else 'frame'}, seed {_CHECK_SEED}"
    generator = torch.Generator(device=device).manual_seed(_CHECK_SEED)  # Philox offset 0
    want = host.mask_fast(host.seed_from_philox(_CHECK_SEED, 0), 5, 512, 400, 64, True)
    if not torch.equal(cuda.masks(5, 512, 400, 64, True, -1, index, generator).cpu(), want):
        return "different masks in graph-safe mode (Philox seed, offset 0)"
    return None
