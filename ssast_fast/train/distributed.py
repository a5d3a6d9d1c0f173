"""torchrun / DistributedDataParallel set-up (NCCL on CUDA, gloo on CPU).

Launch: ``torchrun --nproc_per_node=N -m ssast_fast pretrain ...`` (multi-node: add
``--nnodes``, ``--node_rank``, ``--rdzv_endpoint``). Each process reads its rank from the
environment torchrun sets; ``--batch-size`` stays the per-process batch as in DDP practice, so
the global batch is N x batch-size.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """rank / world size / local rank of this process and the device it trains on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda:local_rank when CUDA is available, else cpu; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def wrap_ddp(module: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` when distributed (unused params allowed:
    the DeiT heads and, per task, one prediction head never receive gradients)."""
    if not info.enabled:
        return module
    ids = [info.device.index] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(values: list[float], info: DistInfo) -> list[float]:
    """Mean of a list of floats across ranks."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.to(info.device)
    dist.all_reduce(t)
    return (t / info.world).cpu().tolist()


def shutdown(info: DistInfo, *objects) -> None:
    """Leave the process group cleanly.

    The DDP module and optimizer must be gone before ``destroy_process_group``: gloo aborts at
    exit otherwise. Callers pass their last references via ``objects`` after dropping their own
    names; this drops those, collects garbage, waits for the other ranks and tears down.
    """
    del objects
    gc.collect()
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
