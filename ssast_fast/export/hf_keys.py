"""State-dict keys between ``ASTModel`` and transformers' AST (``ASTForAudioClassification``).

On disk transformers keeps the classic AST layout (``encoder.layer.N.attention.attention.query``),
which every transformers version reads and writes; from 5.10 its modules are named
``layers.N.attention.q_proj`` and the like in memory. Both are read here; the classic one is
written. Our fused ``qkv`` Linear is split into query / key / value (rows in that order).
The timm heads ``v.head`` / ``v.head_dist`` are never used and are not exported.
"""
from __future__ import annotations

import re

import torch

PREFIX = "audio_spectrogram_transformer."
# ours -> transformers, outside the blocks
_TOP = {
    "v.cls_token": "embeddings.cls_token",
    "v.dist_token": "embeddings.distillation_token",
    "v.pos_embed": "embeddings.position_embeddings",
    "v.patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "v.patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "v.norm.weight": "layernorm.weight",
    "v.norm.bias": "layernorm.bias",
}
_HEAD = {"mlp_head.0": "classifier.layernorm", "mlp_head.1": "classifier.dense"}  # outside PREFIX
# inside block i: ours "v.blocks.{i}.<a>" -> transformers "encoder.layer.{i}.<b>"
_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_QKV = ("query", "key", "value")
_UNUSED = ("v.head.", "v.head_dist.")
# transformers >= 5.10 in-memory names -> the classic on-disk names (applied in this order)
_LIVE_TO_CLASSIC = (
    (r"\.layers\.(\d+)\.", r".encoder.layer.\1."),
    (r"\.attention\.q_proj\.", ".attention.attention.query."),
    (r"\.attention\.k_proj\.", ".attention.attention.key."),
    (r"\.attention\.v_proj\.", ".attention.attention.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
)
_BLOCK_KEY = re.compile(r"^v\.blocks\.(\d+)\.(.+)\.(weight|bias)$")


def to_transformers_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our fine-tuning state dict -> transformers' classic AST keys (contiguous tensors)."""
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if key.startswith(_UNUSED):
            continue
        t = t.detach().contiguous()
        if key in _TOP:
            out[PREFIX + _TOP[key]] = t
            continue
        head = key.rsplit(".", 1)
        if head[0] in _HEAD:
            out[f"{_HEAD[head[0]]}.{head[1]}"] = t
            continue
        m = _BLOCK_KEY.match(key)
        if m is None:
            raise ValueError(f"export: no transformers name for the state-dict key {key!r}")
        i, name, kind = m.groups()
        base = f"{PREFIX}encoder.layer.{i}."
        if name == "attn.qkv":
            for part, chunk in zip(_QKV, t.chunk(3, dim=0)):
                out[f"{base}attention.attention.{part}.{kind}"] = chunk.contiguous()
        elif name in _BLOCK:
            out[f"{base}{_BLOCK[name]}.{kind}"] = t
        else:
            raise ValueError(f"export: no transformers name for the state-dict key {key!r}")
    return out


def classic_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers keys in either layout -> the classic one."""
    out = {}
    for key, t in sd.items():
        for pattern, repl in _LIVE_TO_CLASSIC:
            key = re.sub(pattern, repl, key)
        out[key] = t
    return out


def from_transformers_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers AST keys (either layout) -> our fine-tuning keys (without the unused timm heads).

    Raises ValueError naming the keys that have no counterpart.
    """
    sd = classic_keys(sd)
    inverse = {PREFIX + v: k for k, v in _TOP.items()}
    inverse.update({f"{v}.{kind}": f"{k}.{kind}" for k, v in _HEAD.items() for kind in ("weight", "bias")})
    block_inverse = {v: k for k, v in _BLOCK.items()}
    block_key = re.compile(r"^" + re.escape(PREFIX) + r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, t in sd.items():
        if key in inverse:
            out[inverse[key]] = t
            continue
        m = block_key.match(key)
        if m is None:
            unknown.append(key)
            continue
        i, name, kind = m.groups()
        if name.startswith("attention.attention.") and name.rsplit(".", 1)[1] in _QKV:
            qkv.setdefault((i, kind), {})[name.rsplit(".", 1)[1]] = t
        elif name in block_inverse:
            out[f"v.blocks.{i}.{block_inverse[name]}.{kind}"] = t
        else:
            unknown.append(key)
    for (i, kind), parts in qkv.items():
        if set(parts) != set(_QKV):
            raise ValueError(f"from_transformers: layer {i} lacks attention {kind} parts "
                             f"{sorted(set(_QKV) - set(parts))}")
        out[f"v.blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in _QKV], dim=0)
    if unknown:
        raise ValueError(f"from_transformers: weights with no counterpart in ssast_fast's ASTModel: {unknown[:6]}"
                         + (f" (+{len(unknown) - 6} more)" if len(unknown) > 6 else ""))
    return out
