"""``ssast-fast export``: a fine-tuned checkpoint -> an ONNX file or a transformers folder, then checked.

Settings (task, strides, frames, bins, normalisation, sample rate, loss, labels) come from the
config stored in a training checkpoint, else from the run's ``config.json`` (``--config``, or found
beside the checkpoint or one folder up: ``<run>/models/*.pth`` -> ``<run>/config.json``), else
from flags (an official ``.pth``); flags given explicitly override the config. The patch shape,
width, depth, cls tokens and classes come from the weights.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

TOLERANCE = {"onnx": 1e-5, "transformers": 5e-5}  # rel-L2 of the logits, float32
_GEOMETRY = ("task", "fstride", "tstride", "target_length", "num_mel_bins", "dataset_mean", "dataset_std")
_OPTIONAL = {"sample_rate": 16000, "loss": "BCE", "label_csv": None}


def add_command(sub) -> None:
    """Add the ``export`` sub-command to the CLI's sub-parsers."""
    e = sub.add_parser("export", help="a fine-tuned model as ONNX or a Hugging Face transformers folder")
    e.add_argument("--checkpoint", required=True,
                   help="fine-tuned model: training checkpoint, run model file (models/*.pth) or official .pth")
    e.add_argument("--format", required=True, choices=["onnx", "transformers"], help="what to write")
    e.add_argument("--out", required=True, help="ONNX file path, or transformers folder")
    e.add_argument("--config", default=None, help="run config.json (default: beside the checkpoint or one folder up)")
    g = e.add_argument_group("settings (needed without a config; else they override it)")
    g.add_argument("--task", default=None, choices=["ft_avgtok", "ft_cls"], help="pooling the model was trained with")
    for name in ("fstride", "tstride", "target_length", "num_mel_bins"):
        g.add_argument(f"--{name}", type=int, default=None, help="model geometry")
    g.add_argument("--dataset_mean", type=float, default=None, help="spectrogram mean used to normalise")
    g.add_argument("--dataset_std", type=float, default=None, help="spectrogram std used to normalise")
    g.add_argument("--sample-rate", dest="sample_rate", type=int, default=None, help="Hz (default 16000)")
    g.add_argument("--loss", default=None, choices=["BCE", "CE"], help="fine-tuning loss (default BCE)")
    g.add_argument("--label-csv", dest="label_csv", default=None, help="label CSV (index,mid,display_name)")
    g = e.add_argument_group("output")
    g.add_argument("--code", default="auto", choices=["auto", "plain", "custom"],
                   help="transformers: plain ASTForAudioClassification, a folder with its own modeling file, or "
                        "auto (plain where the model fits it; default)")
    g.add_argument("--no-feature-extractor", dest="feature_extractor", action="store_false",
                   help="transformers: leave out preprocessor_config.json (needed for non-16 kHz models)")
    g.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    g.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare the export's logits with the model's on random batches of 1 and 3 (default: on)")
    e.set_defaults(fn=run_export)


def _load_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state dict, stored config or None) of any model or checkpoint file, read as plain data
    (:func:`ssast_fast.checkpoint.load_model_file`, ``weights_only=True``)."""
    from ssast_fast.checkpoint import load_model_file

    sd, ckpt = load_model_file(path)
    return sd, (dict(ckpt["config"]) if ckpt is not None else None)


def _find_config(args: argparse.Namespace) -> tuple[dict | None, str | None]:
    paths = [args.config] if args.config else [
        os.path.join(d, "config.json") for d in (os.path.dirname(os.path.abspath(args.checkpoint)),
                                                 os.path.dirname(os.path.dirname(os.path.abspath(args.checkpoint))))]
    for p in paths:
        if os.path.isfile(p):
            with open(p) as f:
                return json.load(f), p
    if args.config:
        raise ValueError(f"--config {args.config!r} not found")
    return None, None


def resolve_settings(args: argparse.Namespace, stored: dict | None) -> tuple[dict, str]:
    """(settings, where they came from): stored/run config, then explicit flags on top."""
    config, where = (stored, f"the config in {args.checkpoint}") if stored is not None else _find_config(args)
    settings = {**_OPTIONAL, **{k: v for k, v in (config or {}).items() if k in _GEOMETRY or k in _OPTIONAL}}
    settings.update({k: getattr(args, k) for k in (*_GEOMETRY, *_OPTIONAL) if getattr(args, k) is not None})
    missing = [k for k in _GEOMETRY if settings.get(k) is None]
    if missing:
        raise ValueError(f"export: {'no run config found' if config is None else where + ' lacks'} and these "
                         "settings are missing: " + ", ".join(f"--{k}" for k in missing)
                         + " (pass them, or --config <run>/config.json)")
    if settings["task"] not in ("ft_avgtok", "ft_cls"):
        raise ValueError(f"export: the run's task {settings['task']!r} is not a fine-tuning task (ft_avgtok, ft_cls)")
    return settings, where or "flags"


def _labels(settings: dict) -> list[str] | None:
    from ssast_fast.data import load_label_csv

    csv = settings.get("label_csv")
    if not csv:
        return None
    if not os.path.isfile(csv):
        raise ValueError(f"export: label CSV {csv!r} not found (pass --label-csv)")
    return load_label_csv(csv).names


def _check(args, model, task: str) -> float:
    """Worst rel-L2 of the export's logits vs the model's on random batches of 1 and 3."""
    from ssast_fast.export.metadata import reference_copy, rel_l2

    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(b, model.input_tdim, model.input_fdim, generator=gen) for b in (1, 3)]
    if args.format == "onnx":
        from ssast_fast.export import check_onnx

        return max(check_onnx(args.out, model, task, xs))
    from ssast_fast.export import check_transformers

    with open(os.path.join(args.out, "config.json")) as f:
        head_eps = json.load(f).get("classifier_layer_norm_eps")
    if head_eps is None:  # plain folder: one eps; report what it changes, check the rest against it
        ref = reference_copy(model)
        eps = ref.v.norm.eps
        with torch.no_grad():
            ours = [ref(x, task) for x in xs]
            ref.mlp_head[0].eps = eps
            print(f"plain folder: the classifier LayerNorm eps is {eps:g} (SSAST: {model.mlp_head[0].eps:g}), which "
                  f"changes the logits by rel-L2 {max(rel_l2(ref(x, task), o) for x, o in zip(xs, ours)):.2e}")
        model = ref
    return max(check_transformers(args.out, model, task, xs))


def run_export(args: argparse.Namespace) -> int:
    from ssast_fast.export import to_onnx, to_transformers
    from ssast_fast.model.ast_model import ASTModel

    sd, stored = _load_checkpoint(args.checkpoint)
    s, where = resolve_settings(args, stored)
    model = ASTModel.from_state_dict(sd, fstride=s["fstride"], tstride=s["tstride"], num_mel_bins=s["num_mel_bins"],
                                     target_length=s["target_length"], attn_backend="sdpa")
    labels = _labels(s)
    described = dict(dataset_mean=s["dataset_mean"], dataset_std=s["dataset_std"], labels=labels, loss=s["loss"],
                  sample_rate=s["sample_rate"])
    if args.format == "onnx":
        to_onnx(model, args.out, s["task"], dynamic_batch=True, opset=args.opset, **described)
    else:
        to_transformers(model, args.out, s["task"], code=args.code, feature_extractor=args.feature_extractor, **described)
    print(f"export: {args.checkpoint} ({s['task']}, patch {model.fshape}x{model.tshape}, stride "
          f"{s['fstride']}x{s['tstride']}, {s['target_length']} frames x {s['num_mel_bins']} bins, "
          f"{model.mlp_head[1].out_features} classes{'' if labels else ', no label names'}; settings from {where}) "
          f"-> {args.out}")
    if args.check:
        err = _check(args, model, s["task"])
        ok = err <= TOLERANCE[args.format]
        print(f"check: logits rel-L2 {err:.2e} on batches of 1 and 3 (tolerance {TOLERANCE[args.format]:g}): "
              f"{'ok' if ok else 'FAILED'}")
        if not ok:
            return 1
    return 0
