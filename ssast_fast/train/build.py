"""What a run is made of: the model (new, from pretrained weights, or around a saved state dict),
the front end, the datasets and loaders, the step input, precision, and the module DDP wraps."""
from __future__ import annotations

import contextlib
import logging
import math
import os

import torch
from torch import nn
from torch.utils.data import DataLoader

from ssast_fast.checkpoint import load_model_file, load_reference
from ssast_fast.data import AudioDataset, LabelMap, add_noise, collate, load_label_csv
from ssast_fast.data.sampling import epoch_indices, load_sample_weights
from ssast_fast.features import FrontEnd
from ssast_fast.model import ASTModel
from ssast_fast.train.config import FinetuneConfig, InferenceConfig, InputConfig, PretrainConfig, RunConfig
from ssast_fast.train.distributed import DistInfo

log = logging.getLogger("ssast_fast.train")
WIDTHS = {192: "tiny", 384: "small", 768: "base"}


# ---- model ---------------------------------------------------------------------------------------
def model_options(config: InputConfig, mask_mode: str = "reference") -> dict:
    """ASTModel keyword-only options: the attention backend and the mask mode (``fast`` falls back
    to ``reference`` with a warning where this build lacks it)."""
    if mask_mode == "fast":
        try:
            import ssast_fast.masking.fast  # noqa: F401
        except ImportError:
            log.warning("mask mode 'fast' is not available in this build; using 'reference'")
            mask_mode = "reference"
    return {"attn_backend": config.attn_backend, "mask_mode": mask_mode}


def build_pretrain_model(config: PretrainConfig) -> ASTModel:
    """Pretraining ASTModel: stride = patch shape (no overlap), input [target_length, num_mel_bins]."""
    return ASTModel(fshape=config.fshape, tshape=config.tshape, fstride=config.fshape, tstride=config.tshape,
                    input_fdim=config.num_mel_bins, input_tdim=config.target_length, model_size=config.model_size,
                    pretrain_stage=True, **model_options(config, config.mask_mode))


def load_weights(path_or_sd) -> dict[str, torch.Tensor]:
    """State dict from a training checkpoint, a reference-format file (read as plain data:
    :func:`ssast_fast.checkpoint.load_model_file`) or a mapping (prefixes stripped)."""
    if isinstance(path_or_sd, (str, os.PathLike)):
        return load_model_file(path_or_sd)[0]
    return load_reference(path_or_sd)


def load_model_weights(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(sd)`` (strict); ValueError naming ``source`` when the weights do not fit."""
    try:
        model.load_state_dict(sd)
    except RuntimeError as exc:
        raise ValueError(f"{source}: its weights do not fit the model these settings build: {exc}") from exc


def build_finetune_model(config: FinetuneConfig, pretrained) -> ASTModel:
    """Fine-tuning ASTModel built from pretrained weights (path in any format, or a mapping)."""
    if pretrained is None:
        raise ValueError("fine-tuning needs --pretrained_mdl_path (a pretraining checkpoint)")
    return ASTModel(label_dim=config.n_class, fshape=config.fshape, tshape=config.tshape, fstride=config.fstride,
                    tstride=config.tstride, input_fdim=config.num_mel_bins, input_tdim=config.target_length,
                    model_size=config.model_size, pretrain_stage=False, load_pretrained_mdl_path=load_weights(pretrained),
                    **model_options(config))


def model_from_weights(sd: dict[str, torch.Tensor], config: InputConfig, mask_mode: str = "reference") -> ASTModel:
    """Rebuild a model (pretraining or fine-tuned) around a saved state dict.

    Patch shape comes from ``v.patch_embed.proj.weight``; a pretraining state dict gives its input
    size (``p_input_*``); a fine-tuned one takes strides and input size from ``config`` (fields
    fstride, tstride, num_mel_bins, target_length, attn_backend) and its class count from
    ``mlp_head``. The fine-tuning model is built from a throw-away pretraining skeleton, then the
    saved weights replace everything.
    """
    fshape, tshape = (int(n) for n in sd["v.patch_embed.proj.weight"].shape[-2:])
    size = model_size_of(sd)
    opts = model_options(config, mask_mode)
    patch = dict(fshape=fshape, tshape=tshape, model_size=size)
    if "mlp_head.1.weight" not in sd:
        model = ASTModel(fstride=fshape, tstride=tshape, input_fdim=int(sd["p_input_fdim"]),
                         input_tdim=int(sd["p_input_tdim"]), pretrain_stage=True, **patch, **opts)
    else:
        skeleton = ASTModel(fstride=fshape, tstride=tshape, input_fdim=config.num_mel_bins,
                            input_tdim=config.target_length, pretrain_stage=True, attn_backend="eager", **patch)
        model = ASTModel(label_dim=int(sd["mlp_head.1.weight"].shape[0]), fstride=config.fstride,
                         tstride=config.tstride, input_fdim=config.num_mel_bins, input_tdim=config.target_length,
                         pretrain_stage=False, load_pretrained_mdl_path=skeleton.state_dict(), **patch, **opts)
    model.load_state_dict(sd)
    return model


def model_size_of(sd: dict[str, torch.Tensor]) -> str:
    """The ``model_size`` of a state dict, from its embedding width (and the distillation token)."""
    dim = sd["v.pos_embed"].shape[-1]
    if dim not in WIDTHS:
        raise ValueError(f"cannot tell the model size from embedding width {dim}")
    return "base_nokd" if dim == 768 and "v.dist_token" not in sd else WIDTHS[dim]


class TaskModule(nn.Module):
    """Calls one task of the wrapped ASTModel from ``forward`` (so DDP sees every call).

    ``task == "pretrain_joint"`` runs ``pretrain_joint`` -> (acc, nce, mse); other tasks call the
    model's ``forward``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, task: str, mask_patch: int = 400, cluster: bool = True,
                shared_mask: bool = False):
        if task == "pretrain_joint":
            return self.model.pretrain_joint(x, mask_patch=mask_patch, cluster=cluster, shared_mask=shared_mask)
        return self.model(x, task, cluster=cluster, mask_patch=mask_patch)


def autocast(config: InputConfig, device: torch.device):
    """bf16 autocast context for precision ``bf16``; a no-op for fp32."""
    if config.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---- data ----------------------------------------------------------------------------------------
def build_frontend(config: InputConfig, train: bool) -> FrontEnd:
    """FrontEnd with the run's fbank settings; SpecAugment only for the training set."""
    fe = FrontEnd(sample_rate=config.sample_rate, num_mel_bins=config.num_mel_bins, target_length=config.target_length,
                  mean=config.dataset_mean, std=config.dataset_std, freqm=config.freqm if train else 0,
                  timem=config.timem if train else 0)
    return fe.train(train)


def label_map(config: FinetuneConfig | InferenceConfig) -> LabelMap:
    """The label CSV's LabelMap, or an empty one (no ``label_csv``)."""
    if config.label_csv:
        return load_label_csv(config.label_csv)
    return LabelMap({}, [])


def build_dataset(config: InputConfig, json_path: str, train: bool, labels: LabelMap) -> AudioDataset:
    """The clips of ``json_path``; mixup and noise (a run's settings) only for the training set."""
    frontend = build_frontend(config, train) if config.fbank_in_workers else None
    return AudioDataset(json_path, labels, sample_rate=config.sample_rate,
                        mixup=config.mixup if train else 0.0, skip_bad_audio=config.skip_bad_audio, frontend=frontend,
                        noise=train and bool(config.noise), seed=config.seed)


def build_data(config: RunConfig, info: DistInfo, labels: LabelMap) -> tuple[AudioDataset, AudioDataset, nn.Module, nn.Module]:
    """``(train set, validation set, train frontend, validation frontend)``, frontends on the
    run's device; the validation set defaults to the training data. With ``bal == "bal"`` the
    training set carries ``sample_weights`` (``ssast_fast.data.sampling``)."""
    train_ds = build_dataset(config, config.data_train, True, labels)
    if config.bal == "bal":
        train_ds.sample_weights = load_sample_weights(config.data_train, len(train_ds))
    val_ds = build_dataset(config, config.data_val or config.data_train, False, labels)
    frontend = build_frontend(config, True).to(info.device)
    val_frontend = build_frontend(config, False).to(info.device)
    return train_ds, val_ds, frontend, val_frontend


def make_loader(ds: AudioDataset, config: InputConfig, info: DistInfo, *, train: bool, epoch: int,
                batch_size: int, skip_batches: int = 0) -> DataLoader:
    """Loader over this rank's share of epoch ``epoch``, the first ``skip_batches`` batches left out.

    Order (``ssast_fast.data.sampling.epoch_indices``): for training, balanced draws when the set
    has ``sample_weights`` (``bal``), else shuffled by seed + epoch; so resuming mid-epoch only
    needs the count of batches already done. The loader gets its own torch generator, so
    creating it never draws from the global RNG.
    """
    seed = config.seed
    weights = getattr(ds, "sample_weights", None) if train else None
    indices = epoch_indices(len(ds), weights, shuffle=train, seed=seed, epoch=epoch, rank=info.rank,
                            world=info.world)[skip_batches * batch_size:]
    ds.set_epoch(epoch)
    return DataLoader(ds, batch_size=batch_size, sampler=indices, num_workers=config.num_workers,
                      collate_fn=collate, drop_last=train, pin_memory=info.device.type == "cuda",
                      generator=torch.Generator().manual_seed(seed + epoch))


def steps_per_epoch(ds: AudioDataset, info: DistInfo, batch_size: int) -> int:
    return math.ceil(len(ds) / info.world) // batch_size


def model_input(batch: dict, frontend, device: torch.device, *, noise: bool) -> torch.Tensor:
    """Batch -> normalized spectrograms [B, target_length, bins] on ``device``.

    Waveforms go through ``frontend`` on ``device`` (fbank, pad/cut, SpecAugment when the
    frontend is in train mode, normalization), then noise augmentation when ``noise``. Batches
    whose spectrograms came from the workers are only moved.
    """
    if "fbank" in batch:
        return batch["fbank"].to(device, non_blocking=True)
    wave = batch["wave"].to(device, non_blocking=True)
    with torch.no_grad():
        feats = frontend(wave, batch["lengths"].to(device))
        if noise:
            feats = add_noise(feats)
    return feats


def clip_input(item: dict, frontend, device: torch.device) -> torch.Tensor:
    """One dataset item -> its normalized spectrogram [1, target_length, bins] on ``device``."""
    if "fbank" in item:
        return item["fbank"][None].to(device)
    wave = item["wave"][None].to(device)
    return frontend(wave, torch.tensor([wave.shape[1]], device=device))
