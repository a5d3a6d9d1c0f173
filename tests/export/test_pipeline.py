"""transformers' audio-classification pipeline on an exported folder classifies a generated clip as
ssast_fast's own front end + model do: same top label, every score within 1e-3, scores computed the
same way on both sides (sigmoid for multi-label BCE runs, softmax for single-label CE runs)."""
import pytest
import torch
from export_util import clip, frontend_input

from ssast_fast.export import to_transformers


@pytest.mark.parametrize("kind,loss", [("cls_patch_2cls", "BCE"),  # plain folder, multi-label
                                       ("avgtok_frame_1cls", "CE"),  # own-code folder, single-label
                                       ("avgtok_patch_2cls", "BCE")])
def test_pipeline_classifies_like_ssast_fast(kind, loss, make_model, export_deps, tmp_path):
    from transformers import pipeline

    model, task = make_model(kind, n_class=6, seed=4)
    labels = [f"class {i}" for i in range(6)]
    mean, std = -5.25, 4.75
    out = to_transformers(model, tmp_path / "hf", task, dataset_mean=mean, dataset_std=std, labels=labels, loss=loss)
    for seed, seconds in ((0, 0.35), (1, 0.9)):  # padded and cut to the model's frames
        wave = clip(seconds, seed)
        with torch.no_grad():
            logits = model(frontend_input(model, wave, mean, std), task)[0]
        ours = logits.sigmoid() if loss == "BCE" else logits.softmax(-1)
        classify = pipeline("audio-classification", model=str(out), trust_remote_code=kind != "cls_patch_2cls")
        got = classify(wave, top_k=None)
        scores = {d["label"]: d["score"] for d in got}
        assert got[0]["label"] == labels[int(ours.argmax())]
        top2 = logits.topk(2).values
        assert float(top2[0] - top2[1]) > 1e-2  # a clear winner, so the label test means something
        for i, name in enumerate(labels):
            assert abs(scores[name] - float(ours[i])) <= 1e-3, (name, scores[name], float(ours[i]))
