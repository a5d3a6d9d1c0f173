"""Typed settings of every command: a training run (:class:`PretrainConfig`, :class:`FinetuneConfig`,
both :class:`RunConfig`), ``eval`` (:class:`EvalConfig`) and ``embed`` (:class:`EmbedConfig`).

Field names are the reference ``run.py``'s argument names (``config.json`` and the checkpoints
store them under these names); defaults are those of ``ssast-fast pretrain`` / ``finetune``.
The command line builds these objects (:mod:`ssast_fast.cli`); code builds them directly.
:meth:`RunConfig.validate` names the command-line flag of a value that cannot work.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

MODEL_SIZES = ("tiny", "small", "base", "base_nokd")
PRETRAIN_TASKS = ("pretrain_mpc", "pretrain_mpg", "pretrain_joint")
FINETUNE_TASKS = ("ft_avgtok", "ft_cls")
AS_MEAN, AS_STD = -4.2677393, 4.5689974  # AudioSet spectrogram statistics (the reference's)
VAL_MASK_PATCH = 400  # masked patches per clip in pretraining validation (or all the grid allows)
# The settings that fix the model and data shapes: a resume with other values is refused, and
# eval / embed take them from a training checkpoint.
SHAPE_KEYS = ("task", "fshape", "tshape", "fstride", "tstride", "num_mel_bins", "target_length", "model_size", "n_class")
# Flags of the fields validate() checks (the reference's spellings).
FLAGS = {"batch_size": "--batch-size", "n_epochs": "--n-epochs", "n_print_steps": "--n-print-steps",
         "epoch_iter": "--epoch_iter", "target_length": "--target_length", "num_mel_bins": "--num_mel_bins",
         "fshape": "--fshape", "tshape": "--tshape", "fstride": "--fstride", "tstride": "--tstride"}


def stage_of(task: str) -> str:
    """``pretrain`` for the pretraining tasks, ``finetune`` otherwise (run.py's dispatch)."""
    return "pretrain" if task.startswith("pretrain") else "finetune"


def _default_workers() -> int:
    return min(8, os.cpu_count() or 1)


@dataclass(kw_only=True)
class InputConfig:
    """How clips become model input, and where the model runs (every command that reads audio)."""

    sample_rate: int = 16000           # Hz; files at other rates are resampled
    num_mel_bins: int = 128
    target_length: int = 1024          # frames of 10 ms per clip (cut or zero-padded)
    dataset_mean: float = AS_MEAN      # spectrogram normalization: (x - mean) / (2 std)
    dataset_std: float = AS_STD
    batch_size: int = 12               # clips per step per process (validation: twice as many)
    num_workers: int = field(default_factory=_default_workers)
    fbank_in_workers: bool = False     # spectrograms in the loader workers instead of in the step
    skip_bad_audio: bool = False       # replace undecodable files by the next entry instead of stopping
    attn_backend: str = "auto"         # auto, eager, sdpa, triton, amx
    precision: str = "fp32"            # fp32 or bf16 (autocast)
    device: str = "auto"               # auto, cpu, cuda, cuda:N
    progress: bool = True
    progress_interval: float = 15.0    # s between progress lines off a terminal
    seed: int = 0                      # Python random (masks), NumPy, torch, data order, per-clip streams


@dataclass(kw_only=True)
class RunConfig(InputConfig):
    """A training run; what pretraining and fine-tuning share."""

    data_train: str
    exp_dir: str
    data_val: str | None = None        # None: the training data
    task: str
    model_size: str = "base"
    fshape: int = 16
    tshape: int = 16
    freqm: int = 0                     # SpecAugment mask width bounds (0: off)
    timem: int = 0
    mixup: float = 0.0
    noise: bool = False
    bal: str | None = None             # "bal": balanced sampling by <data_train>_weight.csv
    lr: float = 0.001
    lr_patience: int = 1
    n_epochs: int = 1
    n_print_steps: int = 100
    warmup_steps: int = 1000
    pretrained_mdl_path: str | None = None
    compile: bool = False
    epoch_models: bool = False         # models/audio_model.<N>.pth at every evaluation
    resume: str | None = None          # a training checkpoint, or "auto": <exp_dir>/checkpoints/last.pt
    save_every: int = 0
    # Arguments of the command line this stage has no field for (run.py's arguments the stage
    # accepts and ignores, the command, --preset): written to config.json with the fields.
    cli_args: dict = field(default_factory=dict)

    @property
    def stage(self) -> str:
        return stage_of(self.task)

    def to_json(self) -> dict:
        """config.json / the checkpoint's ``config``: the command line's values and every field."""
        own = {k: v for k, v in asdict(self).items() if k != "cli_args"}
        return {**self.cli_args, **own}

    def validate(self) -> None:
        """ValueError naming the flag of a value that cannot work."""
        if self.model_size not in MODEL_SIZES:
            raise ValueError(f"--model_size {self.model_size!r} is not an SSAST size (run.py's default 'base384' does "
                             f"not build either); use one of {', '.join(MODEL_SIZES)}")
        for name in self._positive():
            if getattr(self, name) < 1:
                raise ValueError(f"{FLAGS[name]} must be >= 1, got {getattr(self, name)}")

    def _positive(self) -> tuple[str, ...]:
        return ("batch_size", "n_epochs", "n_print_steps", "target_length", "num_mel_bins", "fshape", "tshape")


@dataclass(kw_only=True)
class PretrainConfig(RunConfig):
    """Self-supervised pretraining (tasks pretrain_joint, pretrain_mpc, pretrain_mpg)."""

    task: str = "pretrain_joint"
    mask_patch: int = 400              # masked patches per training clip
    epoch_iter: int = 2000             # validate, checkpoint and step the plateau schedule every N steps
    mask_mode: str = "reference"       # reference (exact index stream) or fast (batched sampler)
    shared_mask: bool = False          # pretrain_joint: one mask and encoder pass for both heads

    def validate(self) -> None:
        super().validate()
        if self.task not in PRETRAIN_TASKS:
            raise ValueError(f"--task {self.task!r} is not a pretraining task ({', '.join(PRETRAIN_TASKS)})")

    def _positive(self) -> tuple[str, ...]:
        return super()._positive() + ("epoch_iter",)


@dataclass(kw_only=True)
class FinetuneConfig(RunConfig):
    """Supervised fine-tuning from a pretraining model (tasks ft_avgtok, ft_cls)."""

    task: str = "ft_avgtok"
    label_csv: str
    n_class: int
    fstride: int = 10
    tstride: int = 10
    data_eval: str | None = None       # scored at the end with the best validation model
    warmup: bool = True                # lr = step/1000 x lr every 50 of the first warmup_steps
    head_lr: float = 1.0               # mlp_head lr = head_lr x lr
    adaptschedule: bool = False        # ReduceLROnPlateau on mAP instead of the MultiStepLR below
    lrscheduler_start: int = 10
    lrscheduler_step: int = 5
    lrscheduler_decay: float = 0.5
    loss: str = "BCE"                  # BCE or CE
    metrics: str = "mAP"               # mAP or acc: picks the best model
    wa: bool = False                   # average the per-epoch models wa_start..wa_end after training
    wa_start: int = 16
    wa_end: int = 30
    save_model: bool | None = None     # with wa: False deletes the averaged per-epoch files

    def validate(self) -> None:
        super().validate()
        if self.task not in FINETUNE_TASKS:
            raise ValueError(f"--task {self.task!r} is not a fine-tuning task ({', '.join(FINETUNE_TASKS)})")
        if self.wa and not 1 <= self.wa_start <= self.wa_end <= self.n_epochs:
            raise ValueError(f"--wa True averages epochs --wa_start {self.wa_start} .. --wa_end {self.wa_end}, which "
                             f"must lie within the {self.n_epochs} epochs of --n-epochs "
                             "(1 <= wa_start <= wa_end <= n_epochs)")

    def _positive(self) -> tuple[str, ...]:
        return super()._positive() + ("fstride", "tstride")


@dataclass(kw_only=True)
class InferenceConfig(InputConfig):
    """A model file and the settings that describe it (a training checkpoint brings its own:
    :data:`SHAPE_KEYS`, normalization, sample rate, loss replace these)."""

    checkpoint: str                    # training checkpoint or reference-format model file
    label_csv: str | None = None
    model_size: str = "base"
    fshape: int = 16
    tshape: int = 16
    fstride: int = 10
    tstride: int = 10


@dataclass(kw_only=True)
class EvalConfig(InferenceConfig):
    """``eval``: metrics of a fine-tuned model on a dataset."""

    data_eval: str
    exp_dir: str
    task: str = "ft_avgtok"            # pooling
    loss: str = "BCE"                  # the loss reported


@dataclass(kw_only=True)
class EmbedConfig(InferenceConfig):
    """``embed``: encoder embeddings of every clip."""

    data: str
    out: str
    pool: str = "avgtok"               # avgtok (mean of patch tokens) or cls
    per_patch: bool = False            # also patch_embeddings.npy [N, patches, dim]
    patch_fp16: bool = False


def field_names(cls) -> set[str]:
    """The field names of a config class."""
    return {f.name for f in fields(cls)}
