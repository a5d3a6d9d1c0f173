"""The demo (main job) end to end at its smallest size: espeak-ng corpus, pretraining, both
fine-tuning arms, test evaluation, table and plots; then a second run reuses the cached corpus.

CI runs scripts/setup.sh first, which installs espeak-ng; the test skips only when espeak-ng is
absent *and* cannot be installed here (not root and no passwordless sudo, or no apt).
"""
import json
import os
import shutil
import subprocess

import pytest

from ssast_fast.cli import main


def _espeak_installable() -> bool:
    if shutil.which("apt-get") is None:
        return False
    if os.geteuid() == 0:
        return True
    return shutil.which("sudo") is not None and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def _require_espeak() -> None:
    if shutil.which("espeak-ng"):
        return
    if _espeak_installable() or os.environ.get("CI"):
        pytest.fail("espeak-ng is not installed but could be: run scripts/setup.sh (it installs espeak-ng and sox)")
    pytest.skip("espeak-ng is not installed and not installable here (no root/sudo or no apt); "
                "install it with 'apt-get install espeak-ng sox' to run the demo test")


def test_demo_smoke_end_to_end_and_cached_corpus(tmp_path, capsys):
    _require_espeak()
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--out", str(out), "--seed", "3", "--threads", "2"]) == 0
    first = capsys.readouterr().out
    assert "test accuracy, pretrained + fine-tuned" in first and "| seeds 3 |" in first

    corpus = out / "corpus"
    man = json.loads((corpus / "manifest.json").read_text())
    counts = man["counts"]
    assert counts["pretrain"] == 64 and counts["train"] == 24 and counts["test"] == 24
    for split in ("pretrain", "train", "val", "test"):
        entries = json.loads((corpus / f"{split}.json").read_text())["data"]
        assert len(entries) == counts[split]
        assert all((corpus / e["wav"]).exists() for e in entries)
        labeled = [e["labels"] for e in entries]
        assert all(labeled) if split != "pretrain" else not any(labeled)
    import soundfile as sf

    info = sf.info(str(corpus / json.loads((corpus / "test.json").read_text())["data"][0]["wav"]))
    assert info.samplerate == 16000 and info.channels == 1 and abs(info.duration - 1.0) < 1e-3
    assert (corpus / "labels.csv").read_text().splitlines()[0] == "index,mid,display_name"

    res = json.loads((out / "results.json").read_text())
    assert res["mode"] == "smoke" and res["seeds"] == [3] and res["corpus"]["reused"] is False
    r = res["results"][0]
    for arm in ("pretrained", "scratch"):
        assert 0.0 <= r["finetune"][arm]["test_acc"] <= 1.0
    assert r["pretrain"]["clips_per_s"] > 0 and set(r["seconds"]) == {"pretrain", "finetune_pretrained",
                                                                      "finetune_scratch"}
    assert (out / "results.md").read_text().count("|") > 20
    for png in ("demo_curves.png", "mask_predictions.png", "seed3/pretrain/mask_visualization.png",
                "seed3/pretrain/curves.png", "seed3/finetune_scratch/curves.png"):
        assert (out / png).stat().st_size > 1000, png
    for ck in ("seed3/pretrain/checkpoints/last.pt", "seed3/pretrain/models/audio_model.pth",
               "seed3/finetune_pretrained/checkpoints/best.pt", "seed3/finetune_scratch/checkpoints/best.pt"):
        assert (out / ck).exists(), ck

    # Second run: the corpus is reused (same config hash), not rebuilt.
    wav0 = corpus / json.loads((corpus / "pretrain.json").read_text())["data"][0]["wav"]
    mtime = wav0.stat().st_mtime_ns
    assert main(["demo", "--smoke", "--out", str(out), "--seed", "3", "--threads", "2"]) == 0
    second = capsys.readouterr().out
    assert "corpus: reusing" in second
    assert json.loads((out / "results.json").read_text())["corpus"]["reused"] is True
    assert wav0.stat().st_mtime_ns == mtime


def test_demo_missing_espeak_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on PATH
    monkeypatch.delenv("ESPEAK_NG", raising=False)
    assert main(["demo", "--smoke", "--out", str(tmp_path / "d")]) == 2
    msg = capsys.readouterr().out
    assert "espeak-ng" in msg and "apt-get install" in msg and "scripts/setup.sh" in msg


def test_corpus_is_a_function_of_its_config():
    from ssast_fast.demo.corpus import CorpusConfig, _clip_plan

    a, b = CorpusConfig(), CorpusConfig(n_pretrain=10)
    assert a.hash() != b.hash() and a.hash() == CorpusConfig().hash()
    assert _clip_plan(a, "test", 5, "yes") == _clip_plan(a, "test", 5, "yes")
    assert _clip_plan(a, "test", 5, "yes") != _clip_plan(a, "test", 6, "yes")
