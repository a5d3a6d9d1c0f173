"""A small spoken-keyword corpus generated locally: espeak-ng speech + numpy noise.

Every clip is one word spoken by espeak-ng (a subprocess) with a random voice (English accents
and other languages' voices reading the English word, each with a random variant such as
``+m3``, ``+f2``, ``+croak``), speed and pitch; resampled to 16 kHz with the project's
resampler, trimmed, randomly gained and placed at a random offset in a fixed-length clip, then
mixed with noise generated in numpy (white, pink, brown, mains hum, babble from other synthesized
words, or a mix of two) at a random SNR. Written as 16-bit mono WAV with soundfile plus
reference-format JSON files and a label CSV:

- ``pretrain.json``: unlabeled (keywords and other words; labels empty),
- ``train.json``: few labeled clips per keyword, ``val.json``, ``test.json``,
- ``labels.csv`` (``index,mid,display_name``), ``manifest.json`` (the config, its hash,
  counts and the corpus' log-mel statistics).

Each clip is drawn from its own generator keyed by ``(seed, split, index)``, so the corpus is a
function of its config. A folder whose manifest carries the same config hash (and whose files
all exist) is reused as it is.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "one")
# Words that are not keywords: part of the unlabeled split and the source of babble noise.
OTHER_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "two",
               "three", "four", "five", "six", "seven", "eight", "nine", "learn", "follow", "forward",
               "backward", "visual", "music", "water", "table", "window", "yellow", "orange", "number")
# espeak-ng voices reading the English word: English accents and other languages' phonologies.
LANGUAGES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
             "en-us-nyc", "de", "fr-fr", "es", "it", "nl", "pt", "sv", "pl", "hi")
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "croak", "klatt",
            "klatt2", "klatt3", "Andy", "Annie", "Denis", "john", "linda", "steph", "grandma", "iven", "travis", "aunty")
NOISES = ("white", "pink", "brown", "hum", "babble")
SPLIT_IDS = {"pretrain": 0, "train": 1, "val": 2, "test": 3, "babble": 4}
ESPEAK_RATE = 22050
INSTALL_HINT = ("espeak-ng is needed to build the demo corpus and was not found on PATH. Install it with\n"
                "    sudo apt-get install -y espeak-ng sox      (Debian/Ubuntu; `bash scripts/setup.sh` does this)\n"
                "    brew install espeak-ng                      (macOS)\n"
                "or point ESPEAK_NG to the executable.")


class EspeakMissing(RuntimeError):
    """espeak-ng is not installed (the message says how to install it)."""


@dataclass(frozen=True)
class CorpusConfig:
    """Everything the corpus depends on (its hash names the cached corpus)."""

    n_pretrain: int = 2400          # unlabeled clips
    train_per_class: int = 16       # labeled clips per keyword
    val_per_class: int = 8
    test_per_class: int = 25
    other_fraction: float = 0.2     # share of non-keyword words in the unlabeled split
    seconds: float = 1.0
    sample_rate: int = 16000
    snr_db: tuple[float, float] = (10.0, 30.0)
    speed_wpm: tuple[int, int] = (120, 230)
    pitch: tuple[int, int] = (15, 85)
    seed: int = 0
    keywords: tuple[str, ...] = KEYWORDS
    other_words: tuple[str, ...] = OTHER_WORDS
    languages: tuple[str, ...] = LANGUAGES
    variants: tuple[str, ...] = VARIANTS
    noises: tuple[str, ...] = NOISES
    version: int = 2
    extra: dict = field(default_factory=dict)

    def hash(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def espeak_path() -> str:
    exe = os.environ.get("ESPEAK_NG") or shutil.which("espeak-ng")
    if not exe or not os.path.exists(exe):
        raise EspeakMissing(INSTALL_HINT)
    return exe


def synthesize(word: str, voice: str, speed: int, pitch: int, sample_rate: int, exe: str | None = None) -> np.ndarray:
    """espeak-ng -> float32 waveform at ``sample_rate`` (leading/trailing silence trimmed)."""
    import soundfile as sf
    import torch

    from ssast_fast.data import resample

    exe = exe or espeak_path()
    cmd = [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", "120", "--stdout", word]
    res = subprocess.run(cmd, capture_output=True, check=False)
    if res.returncode != 0 or len(res.stdout) < 100:
        raise RuntimeError(f"espeak-ng failed ({' '.join(cmd)}): {res.stderr.decode(errors='replace').strip()}")
    x, sr = sf.read(io.BytesIO(res.stdout), dtype="float32")
    if x.ndim > 1:
        x = x.mean(axis=1)
    if sr != sample_rate:
        x = resample(torch.from_numpy(x), sr, sample_rate).numpy()
    env = np.abs(x)
    on = np.nonzero(env > 0.02 * max(float(env.max()), 1e-6))[0]
    if len(on):
        pad = int(0.02 * sample_rate)
        x = x[max(0, on[0] - pad): on[-1] + pad]
    return x.astype(np.float32)


# ---- noise ---------------------------------------------------------------------------------------
def _colored(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1 / f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    spec *= f ** (-exponent / 2)
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def _hum(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    base = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
    t = np.arange(n) / sr
    x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi))
            for k in range(1, 8))
    x = x + 0.05 * _colored(rng, n, 1.0)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def _babble(rng: np.random.Generator, n: int, pool: list[np.ndarray]) -> np.ndarray:
    """3-6 other utterances at random offsets and levels, overlapping (plus a little pink noise)."""
    x = np.zeros(n)
    for _ in range(int(rng.integers(3, 7))):
        u = pool[int(rng.integers(len(pool)))]
        u = u[: n]
        start = int(rng.integers(0, max(1, n - len(u) // 2)))
        seg = u[: n - start]
        x[start:start + len(seg)] += rng.uniform(0.3, 1.0) * seg / (np.sqrt(np.mean(u ** 2)) + 1e-9)
    x = x + 0.1 * _colored(rng, n, 1.0)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def make_noise(kind: str, rng: np.random.Generator, n: int, sr: int, pool: list[np.ndarray]) -> np.ndarray:
    if kind == "white":
        return _colored(rng, n, 0.0)
    if kind == "pink":
        return _colored(rng, n, 1.0)
    if kind == "brown":
        return _colored(rng, n, 2.0)
    if kind == "hum":
        return _hum(rng, n, sr)
    if kind == "babble":
        return _babble(rng, n, pool)
    raise ValueError(f"unknown noise {kind!r}")


# ---- clips ---------------------------------------------------------------------------------------
def _voice(rng: np.random.Generator, cfg: CorpusConfig) -> str:
    lang = cfg.languages[int(rng.integers(len(cfg.languages)))]
    var = cfg.variants[int(rng.integers(len(cfg.variants)))]
    return f"{lang}+{var}" if var else lang


def _clip_plan(cfg: CorpusConfig, split: str, index: int, word: str) -> dict:
    rng = np.random.default_rng([cfg.seed, SPLIT_IDS[split], index])
    plan = {"word": word, "voice": _voice(rng, cfg), "speed": int(rng.integers(cfg.speed_wpm[0], cfg.speed_wpm[1] + 1)),
            "pitch": int(rng.integers(cfg.pitch[0], cfg.pitch[1] + 1)), "gain_db": float(rng.uniform(-12, 0)),
            "snr_db": float(rng.uniform(*cfg.snr_db)), "offset": float(rng.random()),
            "noise": [cfg.noises[int(rng.integers(len(cfg.noises)))]]}
    if rng.random() < 0.3:  # a mix of two noises
        plan["noise"].append(cfg.noises[int(rng.integers(len(cfg.noises)))])
    plan["noise_seed"] = int(rng.integers(2**62))
    return plan


def render(plan: dict, speech: np.ndarray, cfg: CorpusConfig, pool: list[np.ndarray]) -> np.ndarray:
    """Place the utterance in a clip of ``cfg.seconds`` and add the planned noise at the planned SNR."""
    n = int(round(cfg.seconds * cfg.sample_rate))
    rng = np.random.default_rng(plan["noise_seed"])
    s = speech.astype(np.float64)
    if len(s) > n:  # keep the middle
        cut = (len(s) - n) // 2
        s = s[cut: cut + n]
    start = int(plan["offset"] * (n - len(s)))
    clean = np.zeros(n)
    clean[start: start + len(s)] = s
    p_speech = np.mean(s ** 2) + 1e-12
    noise = sum(rng.uniform(0.5, 1.0) * make_noise(k, rng, n, cfg.sample_rate, pool) for k in plan["noise"])
    noise = noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)
    noise *= np.sqrt(p_speech / 10 ** (plan["snr_db"] / 10))
    x = clean + noise
    x *= 10 ** (plan["gain_db"] / 20) * 0.9 / max(float(np.abs(x).max()), 1e-6)
    return x.astype(np.float32)


def _split_words(cfg: CorpusConfig) -> dict[str, list[tuple[str, str | None]]]:
    """split -> [(word, label or None)] in clip order."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    rng = np.random.default_rng([cfg.seed, 99])
    pre = []
    for i in range(cfg.n_pretrain):
        if rng.random() < cfg.other_fraction:
            pre.append((cfg.other_words[int(rng.integers(len(cfg.other_words)))], None))
        else:
            pre.append((cfg.keywords[int(rng.integers(len(cfg.keywords)))], None))
    out["pretrain"] = pre
    for split, k in (("train", cfg.train_per_class), ("val", cfg.val_per_class), ("test", cfg.test_per_class)):
        out[split] = [(w, w) for _ in range(k) for w in cfg.keywords]
    return out


def label_mid(word: str) -> str:
    return f"/demo/{word}"


def _manifest_ok(folder: str, cfg: CorpusConfig) -> dict | None:
    path = os.path.join(folder, "manifest.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            man = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    if man.get("config_hash") != cfg.hash() or "stats" not in man:
        return None
    for split in ("pretrain", "train", "val", "test"):
        jp = os.path.join(folder, f"{split}.json")
        if not os.path.exists(jp):
            return None
        with open(jp) as f:
            entries = json.load(f)["data"]
        if len(entries) != man["counts"][split] or not all(os.path.exists(os.path.join(folder, e["wav"]))
                                                          for e in entries):
            return None
    return man


def corpus_stats(folder: str, json_path: str, num_mel_bins: int, target_length: int, n: int = 256) -> tuple[float, float]:
    """Mean and std of the log-mel features (FrontEnd, no normalization) over the first ``n`` clips."""
    import torch

    from ssast_fast.data import load_audio
    from ssast_fast.features import FrontEnd

    with open(json_path) as f:
        entries = json.load(f)["data"][:n]
    waves = [load_audio(os.path.join(folder, e["wav"]), 16000) for e in entries]
    fe = FrontEnd(num_mel_bins=num_mel_bins, target_length=target_length, mean=0.0, std=0.5).eval()
    with torch.no_grad():
        feats = torch.cat([fe(waves[i:i + 64]) for i in range(0, len(waves), 64)])
    return float(feats.mean()), float(feats.std())


def build_corpus(folder: str | os.PathLike, cfg: CorpusConfig, *, num_mel_bins: int = 128, target_length: int = 96,
                 workers: int = 2, log=print) -> dict:
    """Build (or reuse) the corpus in ``folder`` -> the manifest (with ``"reused": bool``)."""
    folder = os.fspath(folder)
    man = _manifest_ok(folder, cfg)
    if man is not None:
        st = man["stats"]
        if (st["num_mel_bins"], st["target_length"]) != (num_mel_bins, target_length):  # features changed only
            st["mean"], st["std"] = corpus_stats(folder, os.path.join(folder, "pretrain.json"), num_mel_bins,
                                                 target_length)
            st["num_mel_bins"], st["target_length"] = num_mel_bins, target_length
            _write_manifest(folder, man)
        man = dict(man, reused=True)
        log(f"corpus: reusing {folder} (config {man['config_hash']}, {sum(man['counts'].values())} clips)")
        return man
    exe = espeak_path()
    import soundfile as sf

    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(os.path.join(folder, "wav"), exist_ok=True)
    words = _split_words(cfg)

    # Babble pool: other words, random voices.
    bplans = [_clip_plan(cfg, "babble", i, cfg.other_words[i % len(cfg.other_words)]) for i in range(48)]
    with ThreadPoolExecutor(workers) as ex:
        pool = list(ex.map(lambda p: synthesize(p["word"], p["voice"], p["speed"], p["pitch"], cfg.sample_rate, exe),
                           bplans))

    def one(job: tuple[str, int, str, str | None]) -> dict:
        split, i, word, label = job
        plan = _clip_plan(cfg, split, i, word)
        speech = synthesize(word, plan["voice"], plan["speed"], plan["pitch"], cfg.sample_rate, exe)
        x = render(plan, speech, cfg, pool)
        rel = os.path.join("wav", split, f"{split}_{i:05d}_{word}.wav")
        sf.write(os.path.join(folder, rel), x, cfg.sample_rate, subtype="PCM_16")
        entry = {"wav": rel, "labels": label_mid(label) if label else ""}
        entry["voice"], entry["noise"], entry["snr_db"] = plan["voice"], "+".join(plan["noise"]), round(plan["snr_db"], 1)
        return entry

    counts = {}
    for split in ("pretrain", "train", "val", "test"):
        os.makedirs(os.path.join(folder, "wav", split), exist_ok=True)
        jobs = [(split, i, w, lab) for i, (w, lab) in enumerate(words[split])]
        with ThreadPoolExecutor(workers) as ex:
            entries = list(ex.map(one, jobs))
        with open(os.path.join(folder, f"{split}.json"), "w") as f:
            json.dump({"data": entries}, f, indent=1)
        counts[split] = len(entries)
        log(f"corpus: {split}: {len(entries)} clips")
    with open(os.path.join(folder, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        for k, word in enumerate(cfg.keywords):
            w.writerow([k, label_mid(word), word])
    mean, std = corpus_stats(folder, os.path.join(folder, "pretrain.json"), num_mel_bins, target_length)
    man = {"config": asdict(cfg), "config_hash": cfg.hash(), "counts": counts,
           "stats": {"num_mel_bins": num_mel_bins, "target_length": target_length, "mean": mean, "std": std},
           "files": {s: f"{s}.json" for s in counts} | {"labels": "labels.csv"}}
    _write_manifest(folder, man)  # written last: its presence means the corpus is complete
    return dict(man, reused=False)


def _write_manifest(folder: str, man: dict) -> None:
    tmp = os.path.join(folder, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(man, f, indent=1)
    os.replace(tmp, os.path.join(folder, "manifest.json"))
