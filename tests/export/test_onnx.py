"""ONNX export: onnxruntime's logits vs PyTorch's on random and real inputs, batch 1 and 3 with one
graph, for every model kind; the metadata; no custom op in the graph; the clear errors."""
import pytest
import torch
from export_util import KINDS, SR, clip, frontend_input

from ssast_fast.export import check_onnx, onnx_logits, onnx_session, read_onnx_metadata, to_onnx
from ssast_fast.export.metadata import rel_l2

TOL = 1e-5


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "cls_rect_2cls"])
def test_onnx_matches_pytorch_every_kind(kind, make_model, export_deps, tmp_path):
    import onnx

    model, task = make_model(kind, n_class=4)
    model.set_attn_backend("eager")  # the export must still trace plain SDPA
    path = to_onnx(model, tmp_path / "m.onnx", task, dataset_mean=-5.5, dataset_std=4.25, labels=list("abcd"),
                   loss="CE")
    gen = torch.Generator().manual_seed(1)
    shape = (model.input_tdim, model.input_fdim)
    real = frontend_input(model, clip(), -5.5, 4.25)  # a generated clip through our front end
    inputs = [torch.randn(1, *shape, generator=gen), torch.randn(3, *shape, generator=gen), real,
              torch.cat([real, torch.randn(2, *shape, generator=gen)])]
    errs = check_onnx(path, model, task, inputs)
    assert max(errs) <= TOL, errs
    # the same graph served batches of 1 and 3
    graph = onnx.load(str(path))
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}, "a custom op reached the graph"

    meta = read_onnx_metadata(path)
    assert meta["dataset_mean"] == -5.5 and meta["dataset_std"] == 4.25
    assert meta["labels"] == list("abcd") and meta["task"] == task
    assert meta["problem_type"] == "single_label_classification"
    fb = meta["fbank"]
    assert fb["sample_frequency"] == SR and fb["num_mel_bins"] == model.input_fdim
    assert fb["target_length"] == model.input_tdim and fb["window_type"] == "hanning" and fb["frame_shift"] == 10


def test_onnx_static_batch_and_defaults(make_model, export_deps, tmp_path):
    import onnx

    model, task = make_model("cls_rect_2cls", n_class=3)
    path = to_onnx(model, tmp_path / "static.onnx", task, dynamic_batch=False)
    dim = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_value == 1
    x = torch.randn(1, model.input_tdim, model.input_fdim)
    with torch.no_grad():
        ref = model(x, task)
    assert rel_l2(onnx_logits(onnx_session(path), x), ref) <= TOL
    meta = read_onnx_metadata(path)
    assert meta["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert meta["problem_type"] == "multi_label_classification"
    assert meta["dataset_mean"] == pytest.approx(-4.2677393) and meta["dataset_std"] == pytest.approx(4.5689974)


def test_onnx_clear_errors(make_model, tmp_path):
    from ssast_fast import ASTModel

    model, task = make_model("avgtok_patch_2cls", n_class=4)
    with pytest.raises(ValueError, match="4 classes"):
        to_onnx(model, tmp_path / "x.onnx", task, labels=["a", "b"])
    with pytest.raises(ValueError, match="task must be one of"):
        to_onnx(model, tmp_path / "x.onnx", "pretrain_mpc")
    with pytest.raises(ValueError, match="loss must be one of"):
        to_onnx(model, tmp_path / "x.onnx", task, loss="MSE")
    with pytest.raises(ValueError, match="dataset_std must be > 0"):
        to_onnx(model, tmp_path / "x.onnx", task, dataset_std=0.0)
    pre = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=32, input_tdim=32, model_size="t2")
    with pytest.raises(ValueError, match="pretraining model"):
        to_onnx(pre, tmp_path / "x.onnx", "ft_avgtok")
    with pytest.raises(TypeError, match="ASTModel"):
        to_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
