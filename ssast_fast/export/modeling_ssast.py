"""SSAST fine-tuned classifiers for Hugging Face transformers (remote code).

ssast_fast's exporter copies this file into a model folder as ``modeling_ssast.py`` (registered
through ``auto_map``); load the folder with ``AutoModelForAudioClassification.from_pretrained(dir,
trust_remote_code=True)``. It extends transformers' AST (``ASTConfig``, ``ASTPreTrainedModel``)
with what SSAST fine-tuning uses and AST cannot express:

* rectangular patches (``patch_size = [frequency, time]``, e.g. 128 x 2 frame patches);
* one cls token (``num_cls_tokens = 1``) or cls + distillation token (2);
* pooling ``"mean"`` over the patch tokens (SSAST's ft_avgtok) or ``"cls"`` (ft_cls: the cls
  token, or the mean of cls and distillation tokens);
* the classifier LayerNorm's own eps (``classifier_layer_norm_eps``, 1e-5 in SSAST).

Weights keep the classic AST names, so the encoder is the same tensors an AST folder holds.
Input ``input_values`` [batch, max_length frames, num_mel_bins]: the normalised log-mel fbank that
``ASTFeatureExtractor`` makes. This file needs only torch and transformers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.audio_spectrogram_transformer.configuration_audio_spectrogram_transformer import ASTConfig
from transformers.models.audio_spectrogram_transformer.modeling_audio_spectrogram_transformer import (
    ASTPreTrainedModel,
)


class SSASTConfig(ASTConfig):
    """``ASTConfig`` plus SSAST's patch shape, cls-token count, pooling and classifier eps."""

    model_type = "ssast"
    num_cls_tokens: int = 2
    pooling: str = "mean"
    classifier_layer_norm_eps: float = 1e-5

    def patch_shape(self) -> tuple[int, int]:
        p = self.patch_size
        return (int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1]))

    def grid(self) -> tuple[int, int]:
        """Patch rows along frequency and columns along time."""
        pf, pt = self.patch_shape()
        return ((self.num_mel_bins - pf) // self.frequency_stride + 1, (self.max_length - pt) // self.time_stride + 1)


class SSASTEmbeddings(nn.Module):
    """[B, frames, bins] -> tokens [B, cls + patches, hidden] with positions (frequency-major patches)."""

    def __init__(self, config: SSASTConfig):
        super().__init__()
        dim = config.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if config.num_cls_tokens == 2:
            self.distillation_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_embeddings = nn.Module()
        self.patch_embeddings.projection = nn.Conv2d(1, dim, kernel_size=config.patch_shape(),
                                                     stride=(config.frequency_stride, config.time_stride))
        f, t = config.grid()
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_cls_tokens + f * t, dim))
        self.shape = (config.max_length, config.num_mel_bins)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        if input_values.dim() != 3 or tuple(input_values.shape[1:]) != self.shape:
            raise ValueError(f"SSAST: input_values must be [batch, {self.shape[0]} frames, {self.shape[1]} mel bins], "
                             f"got {tuple(input_values.shape)}")
        x = self.patch_embeddings.projection(input_values.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2)
        tokens = [self.cls_token] + ([self.distillation_token] if hasattr(self, "distillation_token") else [])
        cls = torch.cat(tokens, dim=1).expand(x.shape[0], -1, -1)
        return torch.cat((cls, x), dim=1) + self.position_embeddings


class SSASTSelfAttention(nn.Module):
    def __init__(self, config: SSASTConfig):
        super().__init__()
        self.heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = (p(x).view(B, N, self.heads, C // self.heads).transpose(1, 2)
                   for p in (self.query, self.key, self.value))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C)


class SSASTAttention(nn.Module):
    def __init__(self, config: SSASTConfig):
        super().__init__()
        self.attention = SSASTSelfAttention(config)
        self.output = nn.Module()
        self.output.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output.dense(self.attention(x))


class SSASTLayer(nn.Module):
    """Pre-norm block: x + attention(LN(x)), then x + fc2(gelu(fc1(LN(x))))."""

    def __init__(self, config: SSASTConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = SSASTAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Module()
        self.output.dense = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.layernorm_before(x))
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x))))


class SSASTModel(ASTPreTrainedModel):
    """The encoder: embeddings, blocks, final LayerNorm -> [B, cls + patches, hidden]."""

    config_class = SSASTConfig

    def __init__(self, config: SSASTConfig):
        super().__init__(config)
        self.embeddings = SSASTEmbeddings(config)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(SSASTLayer(config) for _ in range(config.num_hidden_layers))
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def forward(self, input_values: torch.Tensor, **kwargs) -> torch.Tensor:
        x = self.embeddings(input_values)
        for layer in self.encoder.layer:
            x = layer(x)
        return self.layernorm(x)


class SSASTForAudioClassification(ASTPreTrainedModel):
    """Encoder, pooling (mean of patch tokens, or the cls tokens), LayerNorm + Linear head."""

    config_class = SSASTConfig

    def __init__(self, config: SSASTConfig):
        super().__init__(config)
        if config.num_cls_tokens not in (1, 2) or config.pooling not in ("mean", "cls"):
            raise ValueError(f"SSAST: num_cls_tokens must be 1 or 2 and pooling 'mean' or 'cls', got "
                             f"{config.num_cls_tokens!r} and {config.pooling!r}")
        self.num_labels = config.num_labels
        self.audio_spectrogram_transformer = SSASTModel(config)
        self.classifier = nn.Module()
        self.classifier.layernorm = nn.LayerNorm(config.hidden_size, eps=config.classifier_layer_norm_eps)
        self.classifier.dense = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_values: torch.Tensor, labels: torch.Tensor | None = None,
                **kwargs) -> SequenceClassifierOutput:
        h = self.audio_spectrogram_transformer(input_values)
        n = self.config.num_cls_tokens
        pooled = h[:, n:].mean(dim=1) if self.config.pooling == "mean" else h[:, :n].mean(dim=1)
        logits = self.classifier.dense(self.classifier.layernorm(pooled))
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
