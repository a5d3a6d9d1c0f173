"""What every export carries and checks: the fine-tuned model, its task, input normalisation,
fbank settings, label names and loss type; the optional-dependency import and the rel-L2 metric."""
from __future__ import annotations

import copy
import importlib
from collections.abc import Sequence
from types import ModuleType

import torch
from torch import nn

from ssast_fast.checkpoint import unwrap
from ssast_fast.model.ast_model import FINETUNE_TASKS, ASTModel

# The front end's defaults (AudioSet + LibriSpeech pretraining statistics).
DEFAULT_MEAN = -4.2677393
DEFAULT_STD = 4.5689974
LOSSES = {"BCE": "multi_label_classification", "CE": "single_label_classification"}
EXTRA_HINT = "pip install 'ssast-fast[export]' (or: pip install -r requirements-export.txt)"


def import_optional(name: str, what: str) -> ModuleType:
    """``import name``, or an ImportError saying that ``what`` needs it and how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"{what} needs the optional package {name!r}: {EXTRA_HINT}") from exc


def finetuned(model: nn.Module, task: str) -> ASTModel:
    """The bare fine-tuning ``ASTModel`` inside ``model`` after checking ``task``; else a clear error."""
    model = unwrap(model)
    if not isinstance(model, ASTModel):
        raise TypeError(f"export: model must be an ssast_fast ASTModel, got {type(model).__name__}")
    if task not in FINETUNE_TASKS:
        raise ValueError(f"export: task must be one of {FINETUNE_TASKS}, got {task!r}")
    if model.pretrain_stage:
        raise ValueError("export: this is a pretraining model (pretrain_stage=True) and has no classifier; "
                         "export takes a fine-tuned model (pretrain_stage=False)")
    return model


def reference_copy(model: ASTModel) -> ASTModel:
    """A float32 CPU copy in eval mode on the plain SDPA attention path (no custom kernel)."""
    m = copy.deepcopy(model).float().cpu().eval()
    m.set_attn_backend("sdpa")
    return m


def num_labels(model: ASTModel) -> int:
    return int(model.mlp_head[1].out_features)


def label_names(labels: Sequence[str] | None, n: int) -> list[str]:
    """``labels`` checked against the model's ``n`` outputs; None gives transformers' ``LABEL_i``."""
    if labels is None:
        return [f"LABEL_{i}" for i in range(n)]
    if isinstance(labels, str) or not all(isinstance(s, str) for s in labels):
        raise TypeError("export: labels must be a sequence of str (one name per model output)")
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"export: {len(labels)} label names given, the model predicts {n} classes")
    return labels


def problem_type(loss: str, n: int) -> str:
    """transformers' ``problem_type`` for the fine-tuning loss: BCE -> multi-label, CE -> single-label."""
    if loss not in LOSSES:
        raise ValueError(f"export: loss must be one of {sorted(LOSSES)} (the fine-tuning loss), got {loss!r}")
    if loss == "CE" and n < 2:
        raise ValueError("export: a single-label (CE) classifier needs at least 2 classes")
    return LOSSES[loss]


def check_stats(dataset_mean: float, dataset_std: float, sample_rate: int) -> None:
    for name, v in (("dataset_mean", dataset_mean), ("dataset_std", dataset_std)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"export: {name} must be a number, got {type(v).__name__}")
    if not dataset_std > 0:
        raise ValueError(f"export: dataset_std must be > 0, got {dataset_std}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"export: sample_rate must be a positive int (Hz), got {sample_rate!r}")


def fbank_settings(model: ASTModel, sample_rate: int) -> dict:
    """The front end that makes this model's input (``ssast_fast.features.FrontEnd``), as plain data."""
    from ssast_fast.features import FrontEnd

    fe = FrontEnd(sample_rate=sample_rate, num_mel_bins=model.input_fdim, target_length=model.input_tdim)
    return {**fe.fbank_kwargs(), "frame_length": 25.0, "target_length": model.input_tdim,
            "waveform": "mono float in [-1, 1], its mean removed",
            "normalization": "(fbank - dataset_mean) / (2 * dataset_std); padded frames are 0 before it"}


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float64."""
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))
