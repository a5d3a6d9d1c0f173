"""GPU checks of the CUDA mask kernel (issue 16), shared by pytest and benchmarks/gpu_suite.py.

Each ``check_*(device)`` raises AssertionError on a failure. ``run_all(device)`` runs them all
and returns ``[(name, "ok" | "FAIL: ...")]``; benchmarks/bench_masks.py's ``gpu_checks`` calls it.
They need a CUDA device and the built module ``ssast_fast._C_cuda``.
"""
from __future__ import annotations

import torch

from ssast_fast import _ext
from ssast_fast.masking import kernel_op, sample_masks
from ssast_fast.masking.dispatch import resolve_backend

# Ascending and hashed set order, frames by the pool and by the set algorithm.
SETTINGS = [(512, 400, 64, True), (1212, 400, 101, True), (1212, 100, 101, True), (1212, 250, 101, True),
            (128, 40, 16, True), (512, 400, 1, False), (2048, 10, 1, False)]


def _host(seed: int, batch: int, n: int, m: int, t_dim: int, cluster: bool) -> torch.Tensor:
    return _ext.get().mask_fast(seed, batch, n, m, t_dim, cluster)


def check_kernel_ready(device: str) -> None:
    """The kernel is built and passed its self-check (else the other checks test the fallback)."""
    assert _ext.get_cuda() is not None, "ssast_fast._C_cuda is not built"
    assert resolve_backend(torch.device(device)) == "cuda", "the kernel failed its self-check"


def check_same_masks_as_cpu(device: str) -> None:
    """Default mode: the same seed gives the same masks on the CPU and the GPU, B = 1, 24, 4096."""
    for batch in (1, 24, 4096):
        for n, m, t_dim, cluster in SETTINGS:
            torch.manual_seed(batch + n + m)
            gpu = sample_masks(batch, n, m, t_dim, cluster, device=device)
            torch.manual_seed(batch + n + m)
            cpu = sample_masks(batch, n, m, t_dim, cluster, device="cpu")
            assert gpu.device.type == "cuda" and gpu.dtype == torch.long and gpu.shape == (batch, m)
            assert torch.equal(gpu.cpu(), cpu), (batch, n, m, t_dim, cluster)


def check_graph_safe_mode(device: str) -> None:
    """A CUDA generator: the stream seed comes from its Philox (seed, offset), offset += 4 per call."""
    for n, m, t_dim, cluster in SETTINGS:
        generator = torch.Generator(device=device).manual_seed(n * m)
        first = sample_masks(64, n, m, t_dim, cluster, generator=generator)
        second = sample_masks(64, n, m, t_dim, cluster, generator=generator)
        assert torch.equal(first.cpu(), _host(kernel_op.philox_seed(n * m, 0), 64, n, m, t_dim, cluster))
        assert torch.equal(second.cpu(), _host(kernel_op.philox_seed(n * m, 4), 64, n, m, t_dim, cluster))


def check_no_host_sync(device: str) -> None:
    """Neither mode synchronises with the device (torch's sync debug mode raises on a sync)."""
    generator = torch.Generator(device=device).manual_seed(0)
    sample_masks(24, 512, 400, 64, device=device)  # the self-check (it syncs) happens before
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sample_masks(24, 512, 400, 64, device=device)
        sample_masks(24, 512, 400, 64, generator=generator)
        sample_masks(24, 512, 400, 1, cluster=False, device=device)
    finally:
        torch.cuda.set_sync_debug_mode(0)


def check_cuda_graph_replays(device: str) -> None:
    """Captured in a CUDA graph (no host sync allowed), each replay draws new masks: those of the
    host core for the default generator's (seed, offset) at that replay."""
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    sample_masks(8, 1212, 250, 101, device=device)  # warm up and self-check outside the capture
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(graph):
        out = sample_masks(8, 1212, 250, 101, device=device)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.default_generators[index].manual_seed(99)
    replays = []
    for _ in range(2):
        graph.replay()
        replays.append(out.cpu())
    assert not torch.equal(replays[0], replays[1])
    for replay, offset in zip(replays, (0, 4)):
        assert torch.equal(replay, _host(kernel_op.philox_seed(99, offset), 8, 1212, 250, 101, True)), offset


def check_compiled_with_cuda_graphs(device: str) -> None:
    """torch.compile(mode="reduce-overhead") (CUDA graphs): new masks on every call."""
    step = torch.compile(lambda: sample_masks(24, 512, 400, 64, device=device), mode="reduce-overhead", fullgraph=True)
    calls = [step().clone() for _ in range(4)]
    assert all(c.shape == (24, 400) and c.device.type == "cuda" for c in calls)
    assert all(not torch.equal(a, b) for a, b in zip(calls, calls[1:]))
    for c in calls:
        assert all(len(set(row)) == 400 and min(row) >= 1 for row in c.tolist())


CHECKS = [check_kernel_ready, check_same_masks_as_cpu, check_graph_safe_mode, check_no_host_sync,
          check_cuda_graph_replays, check_compiled_with_cuda_graphs]


def run_all(device: str = "cuda") -> list[tuple[str, str]]:
    """Every check on ``device``: [(name, "ok" or "FAIL: <error>")]."""
    results = []
    for check in CHECKS:
        try:
            check(device)
            results.append((check.__name__, "ok"))
        except Exception as exc:  # noqa: BLE001 (report every check)
            results.append((check.__name__, f"FAIL: {type(exc).__name__}: {exc}"))
    return results
