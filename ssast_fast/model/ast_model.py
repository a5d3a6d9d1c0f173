"""``ASTModel``: the reference SSAST model API, state-dict keys and numbers, with batched heads.

Input x is a spectrogram batch [B, time_frames, freq_bins]; internally a one-channel image
[B, 1, freq, time]. Patch index = f * t_dim + t; tokens = [cls, (dist,) patches...].
"""
from __future__ import annotations

import os
import re

import torch
import torch.nn.functional as F
from torch import nn

from ssast_fast.checkpoint import StateDictSource, load_reference
from ssast_fast.masking.exact import batch_masks
from ssast_fast.masking.fast import sample_masks
from ssast_fast.model.encoder import VisionTransformer, check_attn_backend, model_size_for, size_spec
from ssast_fast.model.heads import column_hits, gather_rows, masked_mse, replace_masked
from ssast_fast.model.pos_embed import adapt_pos_embed, conv_out
from ssast_fast.ops.infonce import BACKENDS as HEADS_BACKENDS
from ssast_fast.ops.infonce import infonce

FINETUNE_TASKS = ("ft_avgtok", "ft_cls")
PRETRAIN_TASKS = ("pretrain_mpc", "pretrain_mpg", "visualize_mask")
TASKS = FINETUNE_TASKS + PRETRAIN_TASKS
MASK_MODES = ("reference", "fast")
POOLS = ("avgtok", "cls")
POOLING = {"ft_avgtok": "avgtok", "ft_cls": "cls"}  # fine-tuning task -> pool of forward_head
_OPTIONAL_V_KEYS = ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias")  # never used


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"ASTModel: {name} must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"ASTModel: {name} must be >= 1, got {v}")
    return v


def _grid(input_fdim: int, input_tdim: int, fshape: int, tshape: int, fstride: int, tstride: int) -> tuple[int, int]:
    if fshape > input_fdim or tshape > input_tdim:
        raise ValueError(f"ASTModel: patch shape ({fshape}, {tshape}) is larger than the input "
                         f"(input_fdim={input_fdim}, input_tdim={input_tdim})")
    return conv_out(input_fdim, fshape, fstride), conv_out(input_tdim, tshape, tstride)


def _pred_layer(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out))


class ASTModel(nn.Module):
    """SSAST Audio Spectrogram Transformer (reference-compatible constructor and forward).

    ``pretrain_stage=True`` builds the pretraining model (mask embedding, ``cpredlayer``,
    ``gpredlayer``; stride must equal the patch shape). ``mask_mode="reference"`` draws masks
    from Python's ``random`` exactly as the reference (bit-exact); ``"fast"`` samples them
    batched on the input's device from torch's RNG, with the reference's distribution.
    ``attn_backend`` picks the attention kernel and ``heads_backend`` ("auto" | "torch" |
    "triton") the InfoNCE loss (``ssast_fast.ops``); "auto" uses Triton on CUDA. ``pretrain_stage=False`` builds a
    fine-tuning model from a pretraining checkpoint (path of a reference DataParallel file, a
    file without ``module.`` prefixes, or an in-memory state dict), adapting the patch stride and
    positional embedding like the reference, with a new ``mlp_head``.

    Deviations where the reference crashes: ``base_nokd`` pretraining uses its single cls token
    (the reference always concatenates a distillation token); a fine-tune whose frequency grid
    shrinks centre-crops f_dim rows (the reference crops with t_dim and fails unless t == f);
    the prediction layers output ``fshape * tshape`` values (the reference hard-codes 256 and
    works only for 256-value patches, where the two agree).
    """

    def __init__(self, label_dim: int = 527, fshape: int = 128, tshape: int = 2, fstride: int = 128,
                 tstride: int = 2, input_fdim: int = 128, input_tdim: int = 1024, model_size: str = "base",
                 pretrain_stage: bool = True, load_pretrained_mdl_path: StateDictSource | None = None,
                 *, attn_backend: str = "auto", mask_mode: str = "reference", heads_backend: str = "auto"):
        super().__init__()
        for name, v in (("label_dim", label_dim), ("fshape", fshape), ("tshape", tshape), ("fstride", fstride),
                        ("tstride", tstride), ("input_fdim", input_fdim), ("input_tdim", input_tdim)):
            _positive_int(name, v)
        spec = size_spec(model_size)
        check_attn_backend(attn_backend)
        if mask_mode not in MASK_MODES:
            raise ValueError(f"ASTModel: mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        self.mask_mode = mask_mode
        if heads_backend not in HEADS_BACKENDS:
            raise ValueError(f"ASTModel: heads_backend must be one of {HEADS_BACKENDS}, got {heads_backend!r}")
        self.heads_backend = heads_backend
        self.model_size = model_size
        self.pretrain_stage = bool(pretrain_stage)
        self.fshape, self.tshape, self.fstride, self.tstride = fshape, tshape, fstride, tstride
        self.input_fdim, self.input_tdim = input_fdim, input_tdim
        self.cls_token_num = spec.cls_tokens
        self.original_embedding_dim = spec.dim
        self.f_dim, self.t_dim = _grid(input_fdim, input_tdim, fshape, tshape, fstride, tstride)
        self.num_patches = self.f_dim * self.t_dim

        if self.pretrain_stage:
            if load_pretrained_mdl_path is not None:
                raise ValueError("ASTModel: load_pretrained_mdl_path must be None at the pretraining stage "
                                 "(pretraining always starts from scratch)")
            if (fstride, tstride) != (fshape, tshape):
                raise ValueError(f"ASTModel: pretraining needs stride == patch shape (no overlap), got "
                                 f"stride ({fstride}, {tstride}) for patch ({fshape}, {tshape})")
            self.p_f_dim, self.p_t_dim = self.f_dim, self.t_dim
            # Registration order fixes the reference's state-dict key order.
            self.p_input_fdim = nn.Parameter(torch.tensor(input_fdim), requires_grad=False)
            self.p_input_tdim = nn.Parameter(torch.tensor(input_tdim), requires_grad=False)
            self.mask_embed = nn.Parameter(nn.init.xavier_normal_(torch.zeros(1, 1, spec.dim)))
            self.v = VisionTransformer(spec, self.num_patches, (fshape, tshape), (fstride, tstride), attn_backend)
            self.cpredlayer = _pred_layer(spec.dim, fshape * tshape)
            self.gpredlayer = _pred_layer(spec.dim, fshape * tshape)
        else:
            if load_pretrained_mdl_path is None:
                raise ValueError("ASTModel: fine-tuning (pretrain_stage=False) needs load_pretrained_mdl_path")
            self.v = self._load_pretrained_encoder(load_pretrained_mdl_path, spec, attn_backend)
            self.mlp_head = nn.Sequential(nn.LayerNorm(spec.dim), nn.Linear(spec.dim, label_dim))

    # ---- construction -------------------------------------------------------------------
    def _load_pretrained_encoder(self, source: StateDictSource, spec, attn_backend: str) -> VisionTransformer:
        sd = load_reference(source)
        missing = [k for k in ("v.patch_embed.proj.weight", "p_input_fdim", "p_input_tdim") if k not in sd]
        if missing:
            raise ValueError(f"ASTModel: not an SSAST pretraining checkpoint, missing {missing}")
        w = sd["v.patch_embed.proj.weight"]
        if w.dim() != 4 or w.shape[1] != 1:
            raise ValueError(f"ASTModel: checkpoint patch projection has shape {tuple(w.shape)}, expected [dim, 1, f, t]")
        if w.shape[0] != spec.dim:
            raise ValueError(f"ASTModel: checkpoint embedding dim {w.shape[0]} does not match "
                             f"model_size={self.model_size!r} (dim {spec.dim})")
        if ("v.dist_token" in sd) != (spec.cls_tokens == 2):
            raise ValueError(f"ASTModel: checkpoint {'has' if 'v.dist_token' in sd else 'lacks'} a distillation "
                             f"token but model_size={self.model_size!r} expects {spec.cls_tokens} cls token(s)")
        p_fshape, p_tshape = int(w.shape[2]), int(w.shape[3])
        if (self.fshape, self.tshape) != (p_fshape, p_tshape):
            raise ValueError(f"ASTModel: patch shape differs between pretraining (f={p_fshape}, t={p_tshape}) and "
                             f"fine-tuning (f={self.fshape}, t={self.tshape}); they must be equal")
        p_input_fdim, p_input_tdim = int(sd["p_input_fdim"]), int(sd["p_input_tdim"])
        self.p_f_dim, self.p_t_dim = _grid(p_input_fdim, p_input_tdim, p_fshape, p_tshape, p_fshape, p_tshape)

        v = VisionTransformer(spec, self.p_f_dim * self.p_t_dim, (p_fshape, p_tshape), (p_fshape, p_tshape),
                              attn_backend)
        v_sd = {k[2:]: t for k, t in sd.items() if k.startswith("v.")}
        want = v.state_dict()
        problems = [f"missing {k}" for k in want if k not in v_sd and k not in _OPTIONAL_V_KEYS]
        problems += [f"unexpected v.{k}" for k in v_sd if k not in want]
        problems += [f"v.{k}: checkpoint {tuple(t.shape)} vs model {tuple(want[k].shape)}"
                     for k, t in v_sd.items() if k in want and t.shape != want[k].shape]
        if problems:
            raise ValueError("ASTModel: checkpoint does not match the model: " + "; ".join(problems[:8]))
        v.load_state_dict(v_sd, strict=False)

        # A new stride reuses the pretrained kernel and bias (the reference builds a new Conv2d
        # holding the same values and the very same bias parameter).
        v.patch_embed.proj.stride = (self.fstride, self.tstride)
        v.pos_embed = nn.Parameter(adapt_pos_embed(v.pos_embed, spec.cls_tokens, (self.p_f_dim, self.p_t_dim),
                                                   (self.f_dim, self.t_dim)))
        return v

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], *, fstride: int, tstride: int, num_mel_bins: int,
                        target_length: int, heads: int | None = None, attn_backend: str = "auto") -> "ASTModel":
        """A fine-tuning model (``pretrain_stage=False``, eval mode) holding ``sd`` (our keys); patch shape,
        width, depth, cls tokens and classes come from the tensors, strides and input size from the arguments.

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
            raise ValueError(f"patch {fshape} x {tshape} is larger than the input ({num_mel_bins} bins x "
                             f"{target_length} frames)")
        tokens = cls_tokens + conv_out(num_mel_bins, fshape, fstride) * conv_out(target_length, tshape, tstride)
        if int(sd["v.pos_embed"].shape[1]) != tokens:
            raise ValueError(f"the weights' positional embedding has {sd['v.pos_embed'].shape[1]} tokens, but stride "
                             f"({fstride}, {tstride}) over {num_mel_bins} bins x {target_length} frames with {fshape} x "
                             f"{tshape} patches gives {tokens}: the geometry (strides, frames, bins) is not the model's")
        # A throw-away pretraining skeleton gives the constructor its encoder; sd then replaces every tensor.
        skeleton = cls(fshape=fshape, tshape=tshape, fstride=fshape, tstride=tshape, input_fdim=num_mel_bins,
                       input_tdim=target_length, model_size=size, pretrain_stage=True, attn_backend="eager")
        model = cls(label_dim=int(sd["mlp_head.1.weight"].shape[0]), fshape=fshape, tshape=tshape, fstride=fstride,
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

    @classmethod
    def from_transformers(cls, path: str | os.PathLike, *, attn_backend: str = "auto") -> "ASTModel":
        """A fine-tuning model from a local transformers AST folder (plain ``ASTForAudioClassification``, or
        the SSAST kind ``ssast_fast.export.to_transformers`` writes; read by
        ``ssast_fast.export.read_transformers_folder``, whose ``task`` says how to run it: "ft_cls" for plain
        AST folders). The folder's LayerNorm eps values are set on the model's norms, so the logits are the
        folder's."""
        from ssast_fast.export.hf_import import read_transformers_folder

        folder = read_transformers_folder(path)
        cfg = folder.config
        p = cfg.get("patch_size", 16)
        patch = (int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1]))
        if patch != tuple(folder.state_dict["v.patch_embed.proj.weight"].shape[-2:]):
            raise ValueError(f"from_transformers: patch_size {p} does not match the patch projection's kernel")
        try:
            model = cls.from_state_dict(
                folder.state_dict, fstride=int(cfg.get("frequency_stride", 10)),
                tstride=int(cfg.get("time_stride", 10)), num_mel_bins=int(cfg.get("num_mel_bins", 128)),
                target_length=int(cfg.get("max_length", 1024)), heads=int(cfg["num_attention_heads"]),
                attn_backend=attn_backend)
        except ValueError as exc:
            raise ValueError(f"from_transformers: {exc}") from exc
        eps = float(cfg.get("layer_norm_eps", 1e-12))
        for m in model.v.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = eps
        model.mlp_head[0].eps = float(cfg.get("classifier_layer_norm_eps", eps))
        return model

    def set_attn_backend(self, backend: str) -> None:
        """Switch every block's attention: "auto" | "eager" | "sdpa" | "triton" | "amx"."""
        self.v.set_attn_backend(backend)

    # ---- input checks ---------------------------------------------------------------------
    def _image(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, F] spectrogram -> [B, 1, F, T] image, after checking it."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"ASTModel: x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"ASTModel: x must be a floating-point tensor, got {x.dtype}")
        if x.dim() != 3 or x.shape[0] < 1:
            raise ValueError(f"ASTModel: x must have shape [batch, time_frames, freq_bins], got {tuple(x.shape)}")
        if tuple(x.shape[1:]) != (self.input_tdim, self.input_fdim):
            raise ValueError(f"ASTModel: x has {x.shape[1]} frames x {x.shape[2]} bins, but the model is configured "
                             f"for input_tdim={self.input_tdim}, input_fdim={self.input_fdim}")
        return x.unsqueeze(1).transpose(2, 3)

    # ---- masking rules ------------------------------------------------------------------
    @property
    def cluster(self) -> bool:
        """The training pipeline's masking rule: square-cluster masks, except frame masking
        (``cluster=False``) when each patch spans all frequency bins (``fshape == input_fdim``)."""
        return self.fshape != self.input_fdim

    def max_mask_patch(self, cluster: bool | None = None) -> int:
        """The largest ``mask_patch`` a mask draw accepts: ``num_patches - 2`` for cluster masks
        (the reference's sampler needs two unmasked patches), ``num_patches`` for frame masks;
        ``cluster=None`` uses :attr:`cluster`."""
        cluster = self.cluster if cluster is None else cluster
        return self.num_patches - 2 if cluster else self.num_patches

    def _check_mask_patch(self, mask_patch: int, cluster: bool) -> None:
        if isinstance(mask_patch, bool) or not isinstance(mask_patch, int):
            raise TypeError(f"ASTModel: mask_patch must be an int, got {type(mask_patch).__name__}")
        limit = self.max_mask_patch(cluster)
        if not 1 <= mask_patch <= limit:
            raise ValueError(f"ASTModel: mask_patch must be in [1, {limit}] for {self.num_patches} patches "
                             f"({'cluster' if cluster else 'frame'} masking), got {mask_patch}")

    def _mask_index(self, batch: int, mask_patch: int, cluster: bool, mask_index: torch.Tensor | None,
                    device: torch.device) -> torch.Tensor:
        if mask_index is None:
            self._check_mask_patch(mask_patch, cluster)
            if self.mask_mode == "fast":
                return sample_masks(batch, self.num_patches, mask_patch, self.t_dim, cluster, device=device)
            return batch_masks(batch, self.num_patches, mask_patch, self.t_dim, cluster).to(device)
        if not isinstance(mask_index, torch.Tensor) or mask_index.dtype not in (torch.int64, torch.int32):
            raise TypeError("ASTModel: mask_index must be an int64 (or int32) tensor [batch, mask_patch]")
        if mask_index.dim() != 2 or mask_index.shape[0] != batch or mask_index.shape[1] < 1:
            raise ValueError(f"ASTModel: mask_index must have shape [{batch}, mask_patch], got {tuple(mask_index.shape)}")
        idx = mask_index.to(device=device, dtype=torch.long)
        if torch.compiler.is_compiling():  # value checks need host syncs; eager calls run them
            return idx
        if int(idx.min()) < 0 or int(idx.max()) >= self.num_patches:
            raise ValueError(f"ASTModel: mask_index values must be in [0, {self.num_patches})")
        srt = idx.sort(dim=1).values
        if bool((srt[:, 1:] == srt[:, :-1]).any()):
            raise ValueError("ASTModel: mask_index rows must not repeat an index")
        return idx

    # ---- tasks ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, task: str, cluster: bool = True, mask_patch: int = 400,
                mask_index: torch.Tensor | None = None):
        """Run ``task`` on x [B, input_tdim, input_fdim].

        ft_avgtok / ft_cls -> logits [B, label_dim]; pretrain_mpc -> (acc, nce);
        pretrain_mpg -> mse; visualize_mask (B = 1) -> (pred, masked) [1, 1, F, T].
        Masks are drawn per sample from Python's ``random`` exactly as the reference draws them
        (cluster=True: square clusters; False: uniform frames), unless ``mask_index`` [B, M] is given.
        """
        if task not in TASKS:
            raise ValueError(f"ASTModel: unknown task {task!r}; expected one of {TASKS}")
        if task in FINETUNE_TASKS and self.pretrain_stage:
            raise ValueError(f"ASTModel: task {task!r} needs a fine-tuning model (pretrain_stage=False)")
        if task in PRETRAIN_TASKS and not self.pretrain_stage:
            raise ValueError(f"ASTModel: task {task!r} needs a pretraining model (pretrain_stage=True)")
        if task in FINETUNE_TASKS:
            return self.forward_head(self.forward_features(x), POOLING[task])
        img = self._image(x)
        if task == "visualize_mask":
            return self._visualize(img, mask_patch, cluster, mask_index)
        idx = self._mask_index(img.shape[0], mask_patch, cluster, mask_index, img.device)
        if task == "pretrain_mpg":
            return self._mpg(img, idx)
        return self._mpc(img, idx)[:2]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, input_tdim, input_fdim] -> final-norm encoder outputs [B, cls_token_num + P, C]
        (cls token(s) first, then the P patch tokens), unmasked; any model stage."""
        return self.v.encode(self.v.patch_embed(self._image(x)))

    def pool(self, h: torch.Tensor, pool: str = "avgtok") -> torch.Tensor:
        """Encoder outputs h [B, cls_token_num + P, C] -> one vector per clip [B, C]: "avgtok"
        averages the patch tokens (ft_avgtok), "cls" the cls token(s) (ft_cls: with two, their mean)."""
        if pool not in POOLS:
            raise ValueError(f"ASTModel: unknown pool {pool!r}; expected one of {POOLS}")
        if pool == "avgtok":
            return h[:, self.cls_token_num:].mean(dim=1)
        return (h[:, 0] + h[:, 1]) / 2 if self.cls_token_num == 2 else h[:, 0]

    def forward_head(self, h: torch.Tensor, pool: str = "avgtok", pre_logits: bool = False) -> torch.Tensor:
        """Encoder outputs h [B, cls_token_num + P, C] -> logits [B, label_dim] through the pooling
        and ``mlp_head``; ``pre_logits=True`` stops after the pooling ([B, C], any model stage)."""
        pooled = self.pool(h, pool)
        if pre_logits:
            return pooled
        if self.pretrain_stage:
            raise ValueError("ASTModel: a pretraining model has no mlp_head; use pre_logits=True")
        return self.mlp_head(pooled)

    def pretrain_joint(self, x: torch.Tensor, mask_patch: int = 400, cluster: bool = True,
                       shared_mask: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The joint pretraining losses (acc, nce, mse); the training loss is ``nce + 10 * mse``.

        ``shared_mask=False`` is the reference loop: an mpc pass, then an mpg pass with its own
        mask draw (both draws happen first; nothing else touches the RNG in between, so the
        masks are the reference's). ``shared_mask=True`` is a documented deviation: one draw
        and one encoder pass feed both heads (half the encoder work).
        """
        img = self._require_pretrain(x)
        mpc_idx = self._mask_index(img.shape[0], mask_patch, cluster, None, img.device)
        mpg_idx = None if shared_mask else self._mask_index(img.shape[0], mask_patch, cluster, None, img.device)
        return self._joint(img, mpc_idx, mpg_idx)

    def joint_losses(self, x: torch.Tensor, mpc_index: torch.Tensor, mpg_index: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(acc, nce, mse) for explicit masks [B, M]; ``mpg_index=None`` shares one pass.

        Pure tensor code with no host sync under ``torch.compile`` (compile this, and draw the
        masks outside: ``ssast_fast.masking.sample_masks``).
        """
        img = self._require_pretrain(x)
        mpc_idx = self._mask_index(img.shape[0], 0, True, mpc_index, img.device)
        mpg_idx = None if mpg_index is None else self._mask_index(img.shape[0], 0, True, mpg_index, img.device)
        return self._joint(img, mpc_idx, mpg_idx)

    def _require_pretrain(self, x: torch.Tensor) -> torch.Tensor:
        if not self.pretrain_stage:
            raise ValueError("ASTModel: joint pretraining needs a pretraining model (pretrain_stage=True)")
        return self._image(x)

    def _joint(self, img: torch.Tensor, mpc_idx: torch.Tensor, mpg_idx: torch.Tensor | None):
        patches = self._patches(img)
        if mpg_idx is None:
            out = self._encode_masked(self.v.patch_embed(img), mpc_idx)
            targets = gather_rows(patches, mpc_idx)
            acc, nce = self._infonce(targets.detach(), self.cpredlayer(out))
            return acc, nce, masked_mse(self.gpredlayer(out), targets)
        # The reference's two masked passes as one encoder call on a [2B] batch (mpc rows, then
        # mpg rows): samples never interact, so each half computes what its own pass computes,
        # and the patch embedding runs once.
        B = img.shape[0]
        emb = self.v.patch_embed(img)
        out = self._encode_masked(torch.cat((emb, emb)), torch.cat((mpc_idx, mpg_idx)))
        acc, nce = self._infonce(gather_rows(patches.detach(), mpc_idx), self.cpredlayer(out[:B]))
        return acc, nce, masked_mse(self.gpredlayer(out[B:]), gather_rows(patches, mpg_idx))

    def _patches(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 1, F, T] -> unfolded input patches [B, P, fshape * tshape] (frequency-major)."""
        return F.unfold(img, kernel_size=(self.fshape, self.tshape), stride=(self.fstride, self.tstride)).transpose(1, 2)

    def _encode_masked(self, emb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Patch embeddings emb [B, P, C] masked at idx [B, M] -> encoder outputs there [B, M, C]."""
        h = self.v.encode(replace_masked(emb, idx, self.mask_embed))
        return gather_rows(h, idx + self.cls_token_num)

    def _mpc(self, img, idx):
        out = self._encode_masked(self.v.patch_embed(img), idx)
        targets = gather_rows(self._patches(img).detach(), idx)
        pred = self.cpredlayer(out)
        acc, nce = self._infonce(targets, pred)
        return acc, nce, targets, pred, idx

    def _infonce(self, targets: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 scores whatever the autocast dtype of pred, as the reference's fp32 buffers
        return infonce(targets.float(), pred.float(), backend=self.heads_backend)

    def _mpg(self, img, idx):
        out = self._encode_masked(self.v.patch_embed(img), idx)
        # The reference does not detach the generative target: d mse / d x flows through it too.
        return masked_mse(self.gpredlayer(out), gather_rows(self._patches(img), idx))

    @torch.no_grad()
    def _visualize(self, img, mask_patch, cluster, mask_index):
        if img.shape[0] != 1:
            raise ValueError(f"ASTModel: visualize_mask takes a batch of one spectrogram, got {img.shape[0]}")
        _, _, targets, pred, idx = self._mpc(img, self._mask_index(1, mask_patch, cluster, mask_index, img.device))
        hits = column_hits(targets, pred)[0]
        patches = self._patches(img)
        shown, masked = patches.clone(), patches.clone()
        shown[0, idx[0]] = (99.0 * hits.to(patches.dtype)).unsqueeze(-1).expand(-1, patches.shape[-1])
        masked[0, idx[0]] = 99.0

        def fold(p: torch.Tensor) -> torch.Tensor:
            return F.fold(p.transpose(1, 2), output_size=(self.input_fdim, self.input_tdim),
                          kernel_size=(self.fshape, self.tshape), stride=(self.fstride, self.tstride))

        return fold(shown), fold(masked)
