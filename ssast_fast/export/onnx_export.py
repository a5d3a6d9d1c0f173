"""``to_onnx``: a fine-tuned ASTModel as an ONNX graph, normalised spectrogram -> logits.

The graph is traced by torch's dynamo exporter (needs onnxscript) from a float32 CPU copy on the
plain SDPA attention path, so no custom kernel ever reaches it. Input ``spectrogram``
[batch, frames, bins] float32 (what ``ssast_fast.features.FrontEnd`` returns), output ``logits``
[batch, classes]. The model's metadata_props hold what a runtime needs to make that input and read
the output: ``dataset_mean``, ``dataset_std``, ``fbank`` (JSON), ``labels`` (JSON list), ``task``,
``problem_type``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ssast_fast.export import metadata as export_metadata

INPUT_NAME, OUTPUT_NAME = "spectrogram", "logits"
_JSON_KEYS = ("fbank", "labels")


class _Logits(nn.Module):
    """``forward(x) = model(x, task)``: one input, one output, as the exporter wants."""

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        return self.model(spectrogram, self.task)


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's notes that do not concern this model: torchvision ops it skips, and a
    deprecation inside torch itself."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        log.setLevel(level)


def to_onnx(model: nn.Module, path: str | os.PathLike, task: str = "ft_avgtok", dynamic_batch: bool = True, *,
            dataset_mean: float = export_metadata.DEFAULT_MEAN, dataset_std: float = export_metadata.DEFAULT_STD,
            labels: Sequence[str] | None = None, loss: str = "BCE", sample_rate: int = 16000,
            opset: int | None = None) -> str:
    """Export ``model`` (fine-tuned, run with ``task``) to the ONNX file ``path`` -> ``path``.

    ``dynamic_batch``: one graph for any batch size (else batch 1 only). ``dataset_mean`` /
    ``dataset_std`` / ``sample_rate``: the front end the model was trained with (stored, not
    applied: the input is already normalised). ``labels``: one name per class (default
    ``LABEL_i``). ``loss``: "BCE" (multi-label, sigmoid scores) or "CE" (single-label, softmax).
    ``opset``: ONNX opset (default: the exporter's).
    """
    model = export_metadata.finetuned(model, task)
    export_metadata.check_stats(dataset_mean, dataset_std, sample_rate)
    names = export_metadata.label_names(labels, export_metadata.num_labels(model))
    ptype = export_metadata.problem_type(loss, len(names))
    export_metadata.import_optional("onnx", "to_onnx")
    export_metadata.import_optional("onnxscript", "to_onnx (torch's dynamo ONNX exporter)")
    ref = export_metadata.reference_copy(model)
    # Batch 2 as the example: torch.export specialises sizes 0 and 1.
    x = torch.zeros(2 if dynamic_batch else 1, model.input_tdim, model.input_fdim)
    dynamic = {INPUT_NAME: {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
    with _quiet_exporter():
        program = torch.onnx.export(_Logits(ref, task).eval(), (x,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=dynamic, opset_version=opset,
                                    verbose=False, report=False)
    meta = {"task": task, "dataset_mean": repr(float(dataset_mean)), "dataset_std": repr(float(dataset_std)),
            "problem_type": ptype, "fbank": json.dumps(export_metadata.fbank_settings(model, sample_rate)),
            "labels": json.dumps(names)}
    for k, v in meta.items():
        program.model.metadata_props[k] = v
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:  # one self-contained file (SSAST models are far below protobuf's 2 GB), replaced whole
        program.save(tmp, external_data=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The metadata ``to_onnx`` stored: floats for mean / std, decoded JSON for fbank / labels."""
    onnx = export_metadata.import_optional("onnx", "read_onnx_metadata")
    props = {p.key: p.value for p in onnx.load(os.fspath(path), load_external_data=False).metadata_props}
    for k in _JSON_KEYS:
        if k in props:
            props[k] = json.loads(props[k])
    for k in ("dataset_mean", "dataset_std"):
        if k in props:
            props[k] = float(props[k])
    return props


def onnx_session(path: str | os.PathLike):
    """An onnxruntime CPU session for the exported graph."""
    ort = export_metadata.import_optional("onnxruntime", "onnx_session")
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def onnx_logits(session, x: torch.Tensor) -> torch.Tensor:
    """Run the graph (an :func:`onnx_session`) on x [B, frames, bins] -> logits [B, classes]."""
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.detach().float().cpu().numpy()})
    return torch.from_numpy(out)


@torch.no_grad()
def check_onnx(path: str | os.PathLike, model: nn.Module, task: str, inputs: Sequence[torch.Tensor]) -> list[float]:
    """rel-L2 between onnxruntime's logits and ``model``'s (float32) for each input [B, frames, bins]."""
    ref = export_metadata.reference_copy(export_metadata.finetuned(model, task))
    session = onnx_session(path)
    return [export_metadata.rel_l2(onnx_logits(session, x), ref(x.float(), task)) for x in inputs]
