"""State-dict keys between ASTModel and transformers' AST (no optional package needed), and the
message a missing optional package gives."""
import subprocess
import sys

import pytest
import torch

from ssast_fast.export.hf_keys import PREFIX, classic_keys, from_transformers_keys, to_transformers_keys
from ssast_fast.export.metadata import import_optional


@pytest.mark.parametrize("kind", ["avgtok_patch_2cls", "cls_frame_1cls"])
def test_keys_round_trip_and_qkv_split(kind, make_model):
    model, _ = make_model(kind)
    sd = model.state_dict()
    hf = to_transformers_keys(sd)
    assert not any(k.startswith(("v.", "mlp_head")) for k in hf)
    assert (f"{PREFIX}embeddings.distillation_token" in hf) == (model.cls_token_num == 2)
    C = model.original_embedding_dim
    qkv = sd["v.blocks.1.attn.qkv.weight"]
    for i, part in enumerate(("query", "key", "value")):
        assert torch.equal(hf[f"{PREFIX}encoder.layer.1.attention.attention.{part}.weight"], qkv[i * C:(i + 1) * C])
    assert torch.equal(hf["classifier.dense.bias"], sd["mlp_head.1.bias"])
    back = from_transformers_keys(hf)
    assert set(back) == {k for k in sd if not k.startswith(("v.head.", "v.head_dist."))}
    assert all(torch.equal(back[k], sd[k]) for k in back)


def test_in_memory_layout_maps_to_the_classic_one():
    live = {f"{PREFIX}layers.3.attention.q_proj.weight": 1, f"{PREFIX}layers.3.attention.o_proj.bias": 2,
            f"{PREFIX}layers.3.mlp.fc1.weight": 3, f"{PREFIX}layers.3.mlp.fc2.bias": 4,
            f"{PREFIX}layers.3.layernorm_after.weight": 5, "classifier.dense.weight": 6}
    assert classic_keys(live) == {
        f"{PREFIX}encoder.layer.3.attention.attention.query.weight": 1,
        f"{PREFIX}encoder.layer.3.attention.output.dense.bias": 2,
        f"{PREFIX}encoder.layer.3.intermediate.dense.weight": 3, f"{PREFIX}encoder.layer.3.output.dense.bias": 4,
        f"{PREFIX}encoder.layer.3.layernorm_after.weight": 5, "classifier.dense.weight": 6}


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match="v.extra.weight"):
        to_transformers_keys({"v.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="pooler.weight"):
        from_transformers_keys({"pooler.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="lacks attention weight parts"):
        from_transformers_keys({f"{PREFIX}encoder.layer.0.attention.attention.query.weight": torch.zeros(1)})


def test_missing_optional_package_says_how_to_install():
    with pytest.raises(ImportError, match=r"to_onnx needs the optional package 'no_such_pkg_x'.*ssast-fast\[export\]"):
        import_optional("no_such_pkg_x", "to_onnx")


def test_package_imports_without_the_extra(tmp_path):
    """Without onnx / transformers installed, ssast_fast.export and the CLI import; the calls say what to install."""
    code = """
import sys
for name in ("onnx", "onnxruntime", "onnxscript", "transformers"):
    sys.modules[name] = None  # as if not installed
import ssast_fast.cli, ssast_fast.export
from ssast_fast import ASTModel
from ssast_fast.model.encoder import MODEL_SIZES, SizeSpec
MODEL_SIZES["t2"] = SizeSpec(64, 2, 2, 2)
skel = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=32, input_tdim=32, model_size="t2")
m = ASTModel(label_dim=2, fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=32, input_tdim=32,
             model_size="t2", pretrain_stage=False, load_pretrained_mdl_path=skel.state_dict())
for call in (lambda: ssast_fast.export.to_onnx(m, "x.onnx", "ft_cls"),
             lambda: ssast_fast.export.to_transformers(m, "x", "ft_cls")):
    try:
        call()
    except ImportError as exc:
        print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all("pip install 'ssast-fast[export]'" in line for line in lines), out.stdout
    assert "'onnx'" in lines[0] and "'transformers'" in lines[1]
