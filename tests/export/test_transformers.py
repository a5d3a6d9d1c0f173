"""transformers export and import: the folder's logits vs ours for every model kind, its config,
the round trip back to ASTModel, folders that transformers wrote itself, and the clear errors."""
import json
import os

import pytest
import torch
from export_util import KINDS

from ssast_fast import ASTModel
from ssast_fast.export import (check_transformers, from_transformers, load_transformers_model,
                               read_transformers_folder, to_transformers)
from ssast_fast.export.metadata import reference_copy, rel_l2

TOL = 5e-5
UNUSED = ("v.head.", "v.head_dist.")


def _inputs(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, model.input_tdim, model.input_fdim, generator=gen) for b in (1, 3)]


def _same_weights(a: ASTModel, b: ASTModel) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        if not k.startswith(UNUSED):
            assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("kind", list(KINDS))
def test_folder_logits_config_and_round_trip(kind, make_model, export_deps, tmp_path):
    model, task = make_model(kind, n_class=4)
    out = to_transformers(model, tmp_path / "hf", task, dataset_mean=-6.0, dataset_std=5.0, labels=list("wxyz"),
                          loss="CE")
    plain = kind == "cls_patch_2cls"
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "ssast_export.json"} <= files
    assert ("modeling_ssast.py" in files) != plain

    cfg = json.loads(open(os.path.join(out, "config.json")).read())
    assert cfg["model_type"] == ("audio-spectrogram-transformer" if plain else "ssast")
    assert (cfg["frequency_stride"], cfg["time_stride"]) == (model.fstride, model.tstride)
    assert (cfg["max_length"], cfg["num_mel_bins"]) == (model.input_tdim, model.input_fdim)
    assert cfg["layer_norm_eps"] == 1e-6 and cfg["problem_type"] == "single_label_classification"
    assert cfg["id2label"] == {"0": "w", "1": "x", "2": "y", "3": "z"}
    if plain:
        assert cfg["patch_size"] == model.fshape and "auto_map" not in cfg
    else:
        assert cfg["patch_size"] == [model.fshape, model.tshape]
        assert cfg["num_cls_tokens"] == model.cls_token_num and cfg["classifier_layer_norm_eps"] == 1e-5
        assert cfg["pooling"] == ("mean" if task == "ft_avgtok" else "cls")
        assert cfg["auto_map"]["AutoModelForAudioClassification"] == "modeling_ssast.SSASTForAudioClassification"
    fe = json.loads(open(os.path.join(out, "preprocessor_config.json")).read())
    assert fe["feature_extractor_type"] == "ASTFeatureExtractor" and fe["sampling_rate"] == 16000
    assert (fe["num_mel_bins"], fe["max_length"], fe["mean"], fe["std"]) == (model.input_fdim, model.input_tdim,
                                                                              -6.0, 5.0)

    errs = check_transformers(out, model, task, _inputs(model))
    assert max(errs) <= TOL, errs
    if not plain:  # the own-code folder computes exactly our graph
        assert max(errs) <= 1e-6, errs

    back = from_transformers(out)
    _same_weights(back, model)
    folder = read_transformers_folder(out)
    assert folder.task == task and folder.labels == list("wxyz")
    assert (folder.dataset_mean, folder.dataset_std) == (-6.0, 5.0)
    hf = load_transformers_model(out)
    with torch.no_grad():
        for x in _inputs(model, seed=1):  # the imported model computes the folder's numbers
            assert rel_l2(back(x, task), hf(input_values=x).logits) <= 1e-6


def test_plain_folder_head_eps(make_model, export_deps, tmp_path):
    """transformers' AST has one eps: the plain folder's head LayerNorm uses 1e-6, SSAST's 1e-5. On a
    trained-like head (norm weights 0.1-0.3) the logits move a little; everything else is exact."""
    model, task = make_model("cls_patch_2cls", n_class=6)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.mlp_head[0].weight.copy_(torch.rand(model.original_embedding_dim, generator=gen) * 0.2 + 0.1)
        model.mlp_head[0].bias.normal_(0.0, 0.05, generator=gen)
        model.v.norm.weight.copy_(torch.rand(model.original_embedding_dim, generator=gen) * 0.2 + 0.1)
    out = to_transformers(model, tmp_path / "plain", task, code="plain")
    xs = _inputs(model)
    diff = max(check_transformers(out, model, task, xs))
    same_eps = reference_copy(model)
    same_eps.mlp_head[0].eps = 1e-6
    exact = max(check_transformers(out, same_eps, task, xs))
    assert exact <= 1e-6, exact
    assert 0 < diff <= 1e-3, diff


@pytest.mark.usefixtures("make_model")  # registers the test sizes
def test_import_folder_written_by_transformers(export_deps, tmp_path):
    """An AST folder saved by transformers itself (eps 1e-12 as AST checkpoints), in the on-disk key layout
    and in the in-memory one, imports with the folder's numbers."""
    from safetensors.torch import save_file
    from transformers import ASTConfig, ASTForAudioClassification

    cfg = ASTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256, patch_size=16,
                    frequency_stride=12, time_stride=10, max_length=70, num_mel_bins=40, layer_norm_eps=1e-12,
                    num_labels=3)
    torch.manual_seed(0)
    hf = ASTForAudioClassification(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.2)
    hf.save_pretrained(tmp_path / "saved")
    live = tmp_path / "live"
    cfg.save_pretrained(live)
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(live / "model.safetensors"))
    x = torch.randn(2, 70, 40)
    with torch.no_grad():
        want = hf(input_values=x).logits
        for folder in (tmp_path / "saved", live):
            ours = from_transformers(folder)
            assert (ours.fshape, ours.tshape, ours.fstride, ours.tstride) == (16, 16, 12, 10)
            assert ours.v.norm.eps == 1e-12 and ours.mlp_head[0].eps == 1e-12
            assert rel_l2(ours(x, "ft_cls"), want) <= 1e-6
    assert ASTModel.from_transformers(live).state_dict().keys() == ours.state_dict().keys()


def test_what_cannot_be_expressed(make_model, export_deps, tmp_path):
    avg, task = make_model("avgtok_patch_2cls")
    with pytest.raises(ValueError, match=r"cannot be a plain ASTForAudioClassification.*mean of the patch tokens"):
        to_transformers(avg, tmp_path / "a", task, code="plain")
    one, task1 = make_model("cls_frame_1cls")
    with pytest.raises(ValueError, match=r"1 cls token.*not square"):
        to_transformers(one, tmp_path / "b", task1, code="plain")
    with pytest.raises(ValueError, match=r"only at 16000 Hz.*feature_extractor=False"):
        to_transformers(avg, tmp_path / "c", task, sample_rate=22050)
    out = to_transformers(avg, tmp_path / "d", task, sample_rate=22050, feature_extractor=False)
    assert not os.path.exists(os.path.join(out, "preprocessor_config.json"))
    assert json.load(open(os.path.join(out, "ssast_export.json")))["fbank"]["sample_frequency"] == 22050
    with pytest.raises(ValueError, match="at least 2 classes"):
        to_transformers(make_model("cls_rect_2cls", n_class=1)[0], tmp_path / "e", "ft_cls", loss="CE")
    with pytest.raises(ValueError, match="code must be one of"):
        to_transformers(avg, tmp_path / "f", task, code="remote")
    with torch.no_grad():
        avg.v.blocks[0].norm1.eps = 1e-5
    with pytest.raises(ValueError, match="several eps values"):
        to_transformers(avg, tmp_path / "g", task)


def test_import_clear_errors(make_model, export_deps, tmp_path):
    model, task = make_model("avgtok_patch_2cls")
    with pytest.raises(ValueError, match="no config.json"):
        from_transformers(tmp_path)
    out = to_transformers(model, tmp_path / "ok", task)
    cfg_path = os.path.join(out, "config.json")
    cfg = json.load(open(cfg_path))
    for change, match in (({"model_type": "vit"}, "not an AST model"),
                          ({"hidden_act": "relu"}, "hidden_act"),
                          ({"num_attention_heads": 4}, "none of ssast_fast's model sizes"),
                          ({"time_stride": 5}, "geometry"),
                          ({"num_cls_tokens": 1}, "distillation token")):
        json.dump({**cfg, **change}, open(cfg_path, "w"))
        with pytest.raises(ValueError, match=match):
            from_transformers(out)
    json.dump(cfg, open(cfg_path, "w"))
    os.remove(os.path.join(out, "model.safetensors"))
    with pytest.raises(ValueError, match="no model.safetensors"):
        from_transformers(out)
