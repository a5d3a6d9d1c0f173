"""``to_transformers``: a fine-tuned ASTModel as a Hugging Face transformers model folder.

Two kinds of folder:

* ``"plain"``: ``ASTForAudioClassification`` (no remote code). transformers' AST pools
  ``(cls + distillation) / 2`` and has square patches and one LayerNorm eps, so only ft_cls models
  with two cls tokens and square patches fit; the classifier LayerNorm gets eps 1e-6 (SSAST's
  head uses 1e-5; see docs/export.md for the logit difference).
* ``"custom"``: the same weights with ``modeling_ssast.py`` (``SSASTForAudioClassification``,
  registered through ``auto_map``), which adds ft_avgtok's mean pooling, rectangular patches, one
  cls token and the head's own eps; load it with ``trust_remote_code=True``.

Both hold ``preprocessor_config.json`` for ``ASTFeatureExtractor`` (16 kHz Kaldi fbank, mel bins,
max length, mean, std) and the label names, so ``pipeline("audio-classification", model=dir)``
classifies a waveform end to end.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence

import torch

from ssast_fast.export import metadata as export_metadata
from ssast_fast.export.hf_keys import to_transformers_keys

CODES = ("auto", "plain", "custom")
MODELING_FILE = "modeling_ssast.py"
WEIGHTS_FILE = "model.safetensors"
FEATURE_FILE = "preprocessor_config.json"
PROVENANCE_FILE = "ssast_export.json"
# SSAST's fbank is the Kaldi one ASTFeatureExtractor computes, but only at this rate (its numpy
# path hard-codes 25 ms / 10 ms frames as 400 / 160 samples and a 512-point FFT).
FEATURE_EXTRACTOR_RATE = 16000


def plain_blockers(model, task: str) -> list[str]:
    """Why ``model`` run with ``task`` is not a plain ``ASTForAudioClassification`` (empty if it is)."""
    why = []
    if task != "ft_cls":
        why.append(f"task {task!r} pools the mean of the patch tokens; transformers' AST pools (cls + dist) / 2 "
                   "(only ft_cls fits)")
    if model.cls_token_num != 2:
        why.append(f"the model has {model.cls_token_num} cls token(s); transformers' AST has 2 (cls + distillation)")
    if model.fshape != model.tshape:
        why.append(f"patch {model.fshape} x {model.tshape} is not square; transformers' AST has square patches")
    return why


def _config_kwargs(model, labels: list[str], problem_type: str) -> dict:
    dim = model.original_embedding_dim
    eps = {float(m.eps) for m in model.v.modules() if isinstance(m, torch.nn.LayerNorm)}
    if len(eps) != 1:
        raise ValueError(f"to_transformers: the encoder's LayerNorms use several eps values {sorted(eps)}; "
                         "transformers' AST has one (layer_norm_eps)")
    return dict(hidden_size=dim, num_hidden_layers=len(model.v.blocks),
                num_attention_heads=model.v.blocks[0].attn.heads,
                intermediate_size=model.v.blocks[0].mlp.fc1.out_features, hidden_act="gelu",
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, qkv_bias=True,
                layer_norm_eps=eps.pop(), frequency_stride=model.fstride, time_stride=model.tstride,
                max_length=model.input_tdim, num_mel_bins=model.input_fdim,
                id2label=dict(enumerate(labels)), label2id={s: i for i, s in enumerate(labels)},
                problem_type=problem_type)


def _config(model, code: str, task: str, labels: list[str], problem_type: str):
    """The folder's config object (``ASTConfig`` or ``SSASTConfig`` with its ``auto_map``)."""
    kw = _config_kwargs(model, labels, problem_type)
    if code == "plain":
        from transformers import ASTConfig

        config = ASTConfig(patch_size=model.fshape, **kw)
        config.architectures = ["ASTForAudioClassification"]
        return config
    from ssast_fast.export.modeling_ssast import SSASTConfig

    config = SSASTConfig(patch_size=[model.fshape, model.tshape], num_cls_tokens=model.cls_token_num,
                         pooling="mean" if task == "ft_avgtok" else "cls",
                         classifier_layer_norm_eps=float(model.mlp_head[0].eps), **kw)
    config.architectures = ["SSASTForAudioClassification"]
    module = MODELING_FILE[:-3]
    config.auto_map = {"AutoConfig": f"{module}.SSASTConfig",
                       "AutoModelForAudioClassification": f"{module}.SSASTForAudioClassification"}
    return config


def _write_feature_extractor(model, out_dir: str, dataset_mean: float, dataset_std: float) -> None:
    from transformers import ASTFeatureExtractor

    with warnings.catch_warnings():  # Kaldi's lowest mel filters are empty at 128 bins too; the numbers agree
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        fe = ASTFeatureExtractor(sampling_rate=FEATURE_EXTRACTOR_RATE, num_mel_bins=model.input_fdim,
                                 max_length=model.input_tdim, mean=float(dataset_mean), std=float(dataset_std),
                                 do_normalize=True)
    fe.save_pretrained(out_dir)


def to_transformers(model: torch.nn.Module, out_dir: str | os.PathLike, task: str = "ft_avgtok", *,
                    dataset_mean: float = export_metadata.DEFAULT_MEAN, dataset_std: float = export_metadata.DEFAULT_STD,
                    labels: Sequence[str] | None = None, loss: str = "BCE", sample_rate: int = 16000,
                    code: str = "auto", feature_extractor: bool = True) -> str:
    """Write ``model`` (fine-tuned, run with ``task``) as a transformers folder -> ``out_dir``.

    ``code``: "auto" (plain when the model fits ``ASTForAudioClassification``, else custom),
    "plain" (ValueError saying why when it does not fit) or "custom". ``loss`` is the fine-tuning
    loss ("BCE" -> ``problem_type`` multi-label, sigmoid scores; "CE" -> single-label, softmax).
    ``labels``: one name per class (default ``LABEL_i``). ``dataset_mean`` / ``dataset_std`` /
    ``sample_rate``: the front end the model was trained with; ``preprocessor_config.json`` needs
    16 kHz (ValueError otherwise unless ``feature_extractor=False``, which leaves the file out:
    then build inputs with ``ssast_fast.features.FrontEnd``; the pipeline will not work).
    """
    model = export_metadata.finetuned(model, task)
    if code not in CODES:
        raise ValueError(f"to_transformers: code must be one of {CODES}, got {code!r}")
    export_metadata.check_stats(dataset_mean, dataset_std, sample_rate)
    if feature_extractor and sample_rate != FEATURE_EXTRACTOR_RATE:
        raise ValueError(
            f"to_transformers: the model was trained on {sample_rate} Hz fbanks, but transformers' ASTFeatureExtractor "
            f"computes SSAST's fbank only at {FEATURE_EXTRACTOR_RATE} Hz, so pipeline() would feed it wrong inputs. "
            "Pass feature_extractor=False to export the model without preprocessor_config.json and build its "
            f"inputs with ssast_fast.features.FrontEnd(sample_rate={sample_rate}, ...)")
    export_metadata.import_optional("transformers", "to_transformers")
    export_metadata.import_optional("safetensors", "to_transformers")
    from safetensors.torch import save_file

    n = export_metadata.num_labels(model)
    names = export_metadata.label_names(labels, n)
    ptype = export_metadata.problem_type(loss, n)
    blockers = plain_blockers(model, task)
    if code == "plain" and blockers:
        raise ValueError("to_transformers: cannot be a plain ASTForAudioClassification folder: " + "; ".join(blockers)
                         + ". Use code='custom' (or 'auto') for a folder with its own modeling file")
    if code == "auto":
        code = "custom" if blockers else "plain"

    config = _config(model, code, task, names, ptype)
    provenance = {"task": task, "code": code, "dataset_mean": float(dataset_mean), "dataset_std": float(dataset_std),
                  "loss": loss, "fbank": export_metadata.fbank_settings(model, sample_rate)}
    out_dir = os.fspath(out_dir)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent) as tmp:  # a failed export leaves out_dir as it was
        sd = to_transformers_keys(model.state_dict())
        save_file({k: v.float().cpu() for k, v in sd.items()}, os.path.join(tmp, WEIGHTS_FILE),
                  metadata={"format": "pt"})
        config.save_pretrained(tmp)
        with open(os.path.join(tmp, PROVENANCE_FILE), "w") as f:  # changes no numbers; any version reads it
            json.dump(provenance, f, indent=2)
        if code == "custom":
            shutil.copyfile(os.path.join(os.path.dirname(__file__), MODELING_FILE), os.path.join(tmp, MODELING_FILE))
        if feature_extractor:
            _write_feature_extractor(model, tmp, dataset_mean, dataset_std)
        os.makedirs(out_dir, exist_ok=True)
        for name in (MODELING_FILE, FEATURE_FILE):  # from an earlier export into the same folder
            if not os.path.exists(os.path.join(tmp, name)) and os.path.exists(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    return out_dir


def load_transformers_model(out_dir: str | os.PathLike):
    """The folder's ``AutoModelForAudioClassification`` in eval mode. Runs the folder's
    ``modeling_ssast.py`` when it has one: call it on folders ``to_transformers`` wrote (or you trust)."""
    transformers = export_metadata.import_optional("transformers", "load_transformers_model")
    custom = os.path.exists(os.path.join(os.fspath(out_dir), MODELING_FILE))
    return transformers.AutoModelForAudioClassification.from_pretrained(
        os.fspath(out_dir), trust_remote_code=custom).eval()


@torch.no_grad()
def check_transformers(out_dir: str | os.PathLike, model: torch.nn.Module, task: str,
                       inputs: Sequence[torch.Tensor]) -> list[float]:
    """rel-L2 between the folder's logits and ``model``'s for each input [B, frames, bins]."""
    ref = export_metadata.reference_copy(export_metadata.finetuned(model, task))
    hf = load_transformers_model(out_dir)
    return [export_metadata.rel_l2(hf(input_values=x.float()).logits, ref(x.float(), task)) for x in inputs]
