"""A fine-tuning ``ASTModel`` rebuilt around a state dict (our keys) and the input geometry."""
from __future__ import annotations

import re

import torch

from ssast_fast.model.ast_model import ASTModel
from ssast_fast.model.encoder import MODEL_SIZES
from ssast_fast.model.pos_embed import conv_out


def model_size_for(dim: int, depth: int, cls_tokens: int, heads: int | None = None) -> str:
    """The ``MODEL_SIZES`` name with this width, depth, cls-token count (and heads); else ValueError."""
    for name, spec in MODEL_SIZES.items():
        if (spec.dim, spec.depth, spec.cls_tokens) == (dim, depth, cls_tokens) and heads in (None, spec.heads):
            return name
    sizes = ", ".join(f"{n} ({s.dim} wide, {s.depth} blocks, {s.heads} heads, {s.cls_tokens} cls)"
                      for n, s in MODEL_SIZES.items())
    raise ValueError(f"a model {dim} wide with {depth} blocks, {cls_tokens} cls token(s)"
                     f"{f' and {heads} heads' if heads else ''} is none of ssast_fast's model sizes: {sizes}")


def finetuned_from_state_dict(sd: dict[str, torch.Tensor], *, fstride: int, tstride: int, num_mel_bins: int,
                              target_length: int, heads: int | None = None, attn_backend: str = "auto") -> ASTModel:
    """``ASTModel`` (pretrain_stage=False) holding ``sd``; patch shape, width, depth, cls tokens and
    classes come from the tensors, strides and input size from the arguments.

    Raises ValueError when ``sd`` is not a fine-tuned model or does not fit the geometry.
    """
    if "mlp_head.1.weight" not in sd:
        raise ValueError("the checkpoint has no classifier (mlp_head): it is a pretraining model, and export "
                         "takes a fine-tuned one")
    fshape, tshape = (int(s) for s in sd["v.patch_embed.proj.weight"].shape[-2:])
    cls_tokens = 2 if "v.dist_token" in sd else 1
    depth = len({m.group(1) for k in sd if (m := re.match(r"v\.blocks\.(\d+)\.", k))})
    size = model_size_for(int(sd["v.pos_embed"].shape[-1]), depth, cls_tokens, heads)
    if fshape > num_mel_bins or tshape > target_length:
        raise ValueError(f"patch {fshape} x {tshape} is larger than the input ({num_mel_bins} bins x {target_length} "
                         "frames)")
    tokens = cls_tokens + conv_out(num_mel_bins, fshape, fstride) * conv_out(target_length, tshape, tstride)
    if int(sd["v.pos_embed"].shape[1]) != tokens:
        raise ValueError(f"the weights' positional embedding has {sd['v.pos_embed'].shape[1]} tokens, but stride "
                         f"({fstride}, {tstride}) over {num_mel_bins} bins x {target_length} frames with {fshape} x "
                         f"{tshape} patches gives {tokens}: the geometry (strides, frames, bins) is not the model's")
    # A throw-away pretraining skeleton gives the constructor its encoder; sd then replaces every tensor.
    skeleton = ASTModel(fshape=fshape, tshape=tshape, fstride=fshape, tstride=tshape, input_fdim=num_mel_bins,
                        input_tdim=target_length, model_size=size, pretrain_stage=True, attn_backend="eager")
    model = ASTModel(label_dim=int(sd["mlp_head.1.weight"].shape[0]), fshape=fshape, tshape=tshape, fstride=fstride,
                     tstride=tstride, input_fdim=num_mel_bins, input_tdim=target_length, model_size=size,
                     pretrain_stage=False, load_pretrained_mdl_path=skeleton.state_dict(), attn_backend=attn_backend)
    unused = ("v.head.", "v.head_dist.")  # timm heads: never used, absent from transformers folders
    want = model.state_dict()
    missing = [k for k in want if k not in sd and not k.startswith(unused)]
    unexpected = [k for k in sd if k not in want]
    if missing or unexpected:
        raise ValueError(f"the weights do not match ASTModel: missing {missing[:6]}, unexpected {unexpected[:6]}")
    model.load_state_dict(sd, strict=False)
    return model.eval()
