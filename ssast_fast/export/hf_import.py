"""Reading a local transformers AST folder in our terms (:func:`read_transformers_folder`); the model is
built from it by ``ASTModel.from_transformers`` (``ssast_fast.export.from_transformers``).

Reads ``config.json`` and the weights (``model.safetensors``, sharded safetensors, or
``pytorch_model.bin`` loaded with ``weights_only=True``) directly: transformers itself is not
needed. Takes plain ``ASTForAudioClassification`` folders (e.g. AST fine-tuned checkpoints)
and the custom SSAST folders that ``to_transformers`` writes. The LayerNorm eps values of the
folder are set on the model's norms (AST checkpoints use 1e-12; ours default to 1e-6 / 1e-5),
so the logits are the folder's; a state dict saved from the model does not carry them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from ssast_fast.export.hf_keys import from_transformers_keys

_MODEL_TYPES = ("audio-spectrogram-transformer", "ssast")


@dataclass(frozen=True)
class TransformersFolder:
    """What a transformers AST folder holds, in our terms."""

    config: dict
    state_dict: dict[str, torch.Tensor]  # our keys
    task: str  # "ft_cls" for plain AST folders
    labels: list[str]
    dataset_mean: float | None  # from preprocessor_config.json, when there is one
    dataset_std: float | None


def _load_weights(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single, index, legacy = (os.path.join(path, n) for n in
                             ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"))
    if os.path.isfile(single):
        return load_file(single)
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        sd: dict[str, torch.Tensor] = {}
        for shard in shards:
            sd.update(load_file(os.path.join(path, shard)))
        return sd
    if os.path.isfile(legacy):
        return torch.load(legacy, map_location="cpu", weights_only=True)
    raise ValueError(f"from_transformers: {path!r} has no model.safetensors, sharded safetensors or pytorch_model.bin")


def _check_block_options(cfg: dict) -> None:
    bad = []
    if cfg.get("hidden_act", "gelu") != "gelu":
        bad.append(f"hidden_act={cfg['hidden_act']!r} (SSAST: exact 'gelu')")
    if cfg.get("intermediate_size") != 4 * cfg.get("hidden_size", 0):
        bad.append(f"intermediate_size={cfg.get('intermediate_size')} (SSAST: 4 x hidden_size)")
    if not cfg.get("qkv_bias", True):
        bad.append("qkv_bias=False (SSAST: True)")
    if bad:
        raise ValueError("from_transformers: the folder's blocks differ from SSAST's: " + "; ".join(bad))


def read_transformers_folder(path: str | os.PathLike) -> TransformersFolder:
    """Parse and check a transformers AST folder; ValueError naming what does not fit ASTModel."""
    path = os.fspath(path)
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise ValueError(f"from_transformers: {path!r} is not a transformers model folder (no config.json)")
    with open(cfg_path) as f:
        cfg = json.load(f)
    if cfg.get("model_type") not in _MODEL_TYPES:
        raise ValueError(f"from_transformers: model_type {cfg.get('model_type')!r} is not an AST model; expected one "
                         f"of {_MODEL_TYPES}")
    _check_block_options(cfg)
    sd = from_transformers_keys(_load_weights(path))
    custom = cfg["model_type"] == "ssast"
    cls_tokens = int(cfg.get("num_cls_tokens", 2)) if custom else 2
    if ("v.dist_token" in sd) != (cls_tokens == 2):
        raise ValueError(f"from_transformers: the config says {cls_tokens} cls token(s) but the weights "
                         f"{'have' if 'v.dist_token' in sd else 'lack'} a distillation token")
    if "mlp_head.1.weight" not in sd:
        raise ValueError("from_transformers: the folder has no classifier (classifier.dense); "
                         "export an ASTForAudioClassification model")
    pooling = cfg.get("pooling", "cls") if custom else "cls"
    n = int(sd["mlp_head.1.weight"].shape[0])
    id2label = {int(k): v for k, v in (cfg.get("id2label") or {}).items()}
    labels = [id2label.get(i, f"LABEL_{i}") for i in range(n)]
    pre = os.path.join(path, "preprocessor_config.json")
    fe = {}
    if os.path.isfile(pre):
        with open(pre) as f:
            fe = json.load(f)
    mean, std = fe.get("mean"), fe.get("std")
    return TransformersFolder(cfg, sd, "ft_avgtok" if pooling == "mean" else "ft_cls", labels,
                              None if mean is None else float(mean), None if std is None else float(std))
