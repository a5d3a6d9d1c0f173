"""The DeiT-style ViT encoder held in ``ASTModel.v`` (timm 0.4.5 layout and state-dict keys).

Pre-norm blocks ``x + attn(norm1(x))``, ``x + mlp(norm2(x))``; LayerNorm eps 1e-6; fused qkv
with bias; exact-erf GELU; no dropout or drop-path. Tokens are ``[cls, (dist,) patches...]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssast_fast.ops import layer_norm
from ssast_fast.ops.attention import BACKENDS as ATTN_BACKENDS
from ssast_fast.ops.attention import attention_packed
from ssast_fast.ops.layer_norm import add_layer_norm_bf16, norm_for_linear


@dataclass(frozen=True)
class SizeSpec:
    dim: int
    depth: int
    heads: int
    cls_tokens: int  # 2 = cls + distillation token (DeiT distilled), 1 = cls only


MODEL_SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(192, 12, 3, 2),
    "small": SizeSpec(384, 12, 6, 2),
    "base": SizeSpec(768, 12, 12, 2),
    "base_nokd": SizeSpec(768, 12, 12, 1),
}


def size_spec(model_size: str) -> SizeSpec:
    if model_size not in MODEL_SIZES:
        raise ValueError(f"model_size must be one of {sorted(MODEL_SIZES)}, got {model_size!r}")
    return MODEL_SIZES[model_size]


def model_size_for(dim: int, depth: int, cls_tokens: int, heads: int | None = None) -> str:
    """The ``MODEL_SIZES`` name with this width, depth, cls-token count (and heads); else ValueError."""
    for name, spec in MODEL_SIZES.items():
        if (spec.dim, spec.depth, spec.cls_tokens) == (dim, depth, cls_tokens) and heads in (None, spec.heads):
            return name
    sizes = ", ".join(f"{n} ({s.dim} wide, {s.depth} blocks, {s.heads} heads, {s.cls_tokens} cls)"
                      for n, s in MODEL_SIZES.items())
    raise ValueError(f"a model {dim} wide with {depth} blocks, {cls_tokens} cls token(s)"
                     f"{f' and {heads} heads' if heads else ''} is none of ssast_fast's model sizes: {sizes}")


def check_attn_backend(backend: str) -> str:
    if backend not in ATTN_BACKENDS:
        raise ValueError(f"attn_backend must be one of {ATTN_BACKENDS}, got {backend!r}")
    return backend


class PatchEmbed(nn.Module):
    """Conv2d patch projection: [B, 1, F, T] -> [B, f_dim * t_dim, dim] (frequency-major)."""

    def __init__(self, dim: int, kernel: tuple[int, int], stride: tuple[int, int]):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, backend: str = "auto"):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.backend = backend
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads)
        return self.proj(attention_packed(qkv, scale=self.scale, backend=self.backend))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, backend: str = "auto"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, backend)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # norm_for_linear: the norm and the autocast cast to bf16 in one pass under CPU bf16 autocast
        x = x + self.attn(norm_for_linear(self.norm1, x))
        return x + self.mlp(norm_for_linear(self.norm2, x))

    def forward_fused(self, x: torch.Tensor, x_norm: torch.Tensor, next_norm: nn.LayerNorm | None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` with each residual add fused with the LayerNorm after it (the fused C++
        kernels, layer_norm backend "cpp": float32 CPU input under CPU bf16 autocast).

        Args:
            x: the residual stream [B, N, C], float32.
            x_norm: ``norm1(x)`` in bfloat16 (the previous block's fused output).
            next_norm: the LayerNorm applied next (the next block's ``norm1``), or None.
        Returns:
            (the block's output [B, N, C] float32, ``next_norm`` of it in bfloat16), or
            (the output, None) without ``next_norm``.
        """
        x, y = add_layer_norm_bf16(x, self.attn(x_norm), self.norm2.weight, self.norm2.bias, self.norm2.eps)
        h = self.mlp(y)
        if next_norm is None:
            return x + h, None
        return add_layer_norm_bf16(x, h, next_norm.weight, next_norm.bias, next_norm.eps)


class VisionTransformer(nn.Module):
    """Encoder with the reference's parameter names; ``head``/``head_dist`` exist but are unused."""

    def __init__(self, spec: SizeSpec, num_patches: int, kernel: tuple[int, int], stride: tuple[int, int],
                 attn_backend: str = "auto"):
        super().__init__()
        dim = spec.dim
        self.cls_token_num = spec.cls_tokens
        # Registration order fixes the state-dict key order: cls_token, pos_embed, dist_token, ...
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + spec.cls_tokens, dim))
        if spec.cls_tokens == 2:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_embed = PatchEmbed(dim, kernel, stride)
        self.blocks = nn.ModuleList(Block(dim, spec.heads, attn_backend) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 1000)
        if spec.cls_tokens == 2:
            self.head_dist = nn.Linear(dim, 1000)
        self._init_weights()

    def _init_weights(self) -> None:
        for p in (self.cls_token, self.pos_embed, getattr(self, "dist_token", None)):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def set_attn_backend(self, backend: str) -> None:
        check_attn_backend(backend)
        for blk in self.blocks:
            blk.attn.backend = backend

    def cls_tokens(self, batch: int) -> torch.Tensor:
        """[batch, cls_token_num, dim]: the cls (and distillation) token rows."""
        toks = [self.cls_token] + ([self.dist_token] if self.cls_token_num == 2 else [])
        return torch.cat(toks, dim=1).expand(batch, -1, -1)

    def encode(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, P, dim] patch embeddings -> [B, cls_token_num + P, dim] final-norm outputs."""
        x = torch.cat((self.cls_tokens(patches.shape[0]), patches), dim=1) + self.pos_embed
        if len(self.blocks) and layer_norm.resolve_backend(x, norm=self.blocks[0].norm1) == "cpp":
            return self.norm(self._blocks_fused(x))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def _blocks_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The blocks under CPU bf16 autocast (:meth:`Block.forward_fused`), same math: block i's
        last residual add runs fused with block i+1's norm1, one pass each way."""
        blocks = list(self.blocks)
        y = norm_for_linear(blocks[0].norm1, x)
        for blk, nxt in zip(blocks, blocks[1:] + [None]):
            x, y = blk.forward_fused(x, y, None if nxt is None else nxt.norm1)
        return x
