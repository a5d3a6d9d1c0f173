"""Write the compact golden subset (this folder) from the full fixtures, checking hashes.

Usage (from the repository root):
    python tests/golden_subset/make_subset.py [--src ../shared/golden]     # (re)write the subset
    python tests/golden_subset/make_subset.py --check                      # compare, write nothing

Every source file read is checked first (model: size and sha256 from ``manifest.files``;
fbank: size from ``npz_bytes``, the embedded ``case_json`` against the manifest, and each WAV
against ``waveform_raw``). Arrays are copied bit for bit; what the subset stops storing is
regenerated and compared: pretraining weights and inputs from their recipes (every tensor's
sha256, and the full ``pt_patch_t256`` file bit for bit), fine-tune heads from ``head_recipe``.
The selection and its reasons are in README.md beside this script.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from golden import REPO, draw, sha256  # noqa: E402

MODEL_CASES = ["pt_patch_t256", "pt_frame_t256", "pt_patch_f64_t128",
               "ft_patch_overlap_t128", "ft_patch_f64_interp_t256"]
# Gradients kept per stored task file: every tensor of at most this many elements (norms,
# biases, tokens, the fine-tune head), the input-side tensors, and for the one task with full
# gradients a block's qkv (the attention backward) and the InfoNCE head's first layer.
GRAD_MAX_ELEMENTS = 10_000
GRAD_KEYS = ["v.patch_embed.proj.weight", "v.pos_embed"]
GRAD_KEYS_FULL = {("pt_patch_t256", "mpc"): ["v.blocks.0.attn.qkv.weight", "cpredlayer.0.weight"]}
FBANK_CASES = [
    # the SSAST setting (16 kHz, 128 bins, hanning): speech, the mel-rounding-sensitive square
    # wave, a tone, the 125 dB worst case, digital silence, a tone straddling the log floor
    "ssast16k_speech_en", "ssast16k_square220_triangle1300", "ssast16k_tone_sine440",
    "ssast16k_int16range_sine1k", "ssast16k_silence_zeros", "ssast16k_near_silent_tone3e-5",
    # frame-count boundaries, snip_edges=False mirroring, and the two error cases
    "len400", "len401", "len560", "len400_snip_false", "len399", "len399_snip_false",
    # other rates (8 kHz: four empty filters), windows, bin counts, the energy column
    "sr8000_speech", "combo_8k_mel80_povey_snipfalse", "combo_48k_mel64_hamming_energy",
    "opt_energy_silence",
    # the whole per-clip pipeline: padding, a short clip, silence
    "pipe_sc1s_word", "pipe_sc_short", "pipe_sc_silence",
]
FBANK_GROUPS = ["options2"]  # every case of these groups
FBANK_KEYS = ["waveform", "sample_rate", "fbank_f64", "final_f64", "case_json"]
FBANK_KEYS_PIPELINE = ["waveform_raw"]
FBANK_IDENTITY = ["name", "kwargs", "num_samples", "sample_rate", "fbank_shape", "mean_subtracted"]  # the decoded WAV, which the pipeline tests compare


def file_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz with fixed timestamps, so equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, a in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            item = io.BytesIO()
            np.lib.format.write_array(item, np.asanyarray(a), allow_pickle=False)
            zf.writestr(info, item.getvalue())
    return buf.getvalue()


def read_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return dict(z)


class Source:
    """The full fixture set; every file read is checked against its manifest first."""

    def __init__(self, root: Path):
        self.root = root
        self.model = json.loads((root / "model" / "manifest.json").read_text())
        self.fbank = json.loads((root / "fbank" / "manifest.json").read_text())

    def model_file(self, rel: str) -> bytes:
        data = (self.root / "model" / rel).read_bytes()
        want = self.model["files"][rel]
        if len(data) != want["bytes"] or file_sha(data) != want["sha256"]:
            raise SystemExit(f"model/{rel}: size or sha256 differs from manifest.files")
        return data

    def fbank_file(self, case: dict) -> bytes:
        data = (self.root / "fbank" / case["file"]).read_bytes()
        # The identity fields only: the manifest corrected one derived field after the npz files
        # were written (opt2_subtract_mean's empty_mel_filter_columns: no floor after the mean).
        embedded = json.loads(str(read_npz(data)["case_json"]))
        same = all(embedded[k] == case[k] for k in FBANK_IDENTITY)
        if len(data) != case["npz_bytes"] or not same:
            raise SystemExit(f"fbank/{case['file']}: size or embedded case_json differs")
        return data

    def wav_file(self, case: dict, waveform_raw: np.ndarray) -> bytes:
        data = (self.root / "fbank" / case["wav_file"]).read_bytes()
        with wave.open(io.BytesIO(data)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            ok = w.getframerate() == case["sample_rate"] and w.getnchannels() == 1
        if not ok or not np.array_equal(pcm.astype(np.float32) / np.float32(32768), waveform_raw):
            raise SystemExit(f"fbank/{case['wav_file']}: does not decode to waveform_raw")
        return data


def check_recipe(case_id: str, w: dict, full: dict | None = None) -> None:
    """The recipe reproduces every tensor of the model (and the full file where there is one)."""
    drawn = draw(w["recipe"])
    for k, shape, dtype in zip(w["keys"], w["shapes"], w["dtypes"]):
        a = drawn[k]
        if list(a.shape) != shape or str(a.dtype) != dtype or sha256(a) != w["sha256"][k]:
            raise SystemExit(f"{case_id}: recipe does not reproduce {k}")
        if full is not None and not (a.dtype == full[k].dtype and np.array_equal(a, full[k])):
            raise SystemExit(f"{case_id}: recipe differs from the stored file at {k}")


def model_subset(src: Source) -> tuple[dict, dict[str, bytes]]:
    """(subset model manifest without ``files``, {relative path: bytes})."""
    man = copy.deepcopy(src.model)
    man["cases"] = {c: man["cases"][c] for c in MODEL_CASES}
    out: dict[str, bytes] = {"maskgen.json": src.model_file("maskgen.json")}
    for cid, case in man["cases"].items():
        w = case["weights"]
        if case["stage"] == "pretrain":
            if w["storage"] != "recipe":  # drawn, proven equal to the stored tensors
                full = load_file(src.root / "model" / w["file"]) if w["storage"] == "full" else None
                if full is not None:
                    src.model_file(w["file"])
                check_recipe(cid, w, full)
                for k in ("file", "base_model", "delta_keys", "keys_dropped_from_base"):
                    w.pop(k, None)
                w["storage"] = "recipe"
        else:  # keep only what no recipe gives (the adapted pos_embed); the head is redrawn
            delta = _load_st(src.model_file(w["file"]))
            head = draw(w["head_recipe"])
            for k, a in head.items():
                if not (a.dtype == delta[k].dtype and np.array_equal(a, delta[k])):
                    raise SystemExit(f"{cid}: head_recipe does not reproduce {k}")
            keep = {k: v for k, v in delta.items() if k not in head}
            w["delta_keys"] = sorted(keep)
            out[w["file"]] = save(keep)
        z = read_npz(src.model_file(case["file"]))
        x = z.pop(case["input"]["key"])
        drawn = np.random.default_rng(case["input"]["seed"]).standard_normal(x.shape).astype(x.dtype)
        if not np.array_equal(drawn, x) or sha256(x) != case["input"]["sha256"]:
            raise SystemExit(f"{cid}: the input recipe does not reproduce x")
        case["npz_keys"] = [k for k in case["npz_keys"] if k in z]
        out[case["file"]] = npz_bytes(z)
        for task, meta in case["tasks"].items():
            g = meta["grads"]
            if not g["file"]:
                continue
            stored = _load_st(src.model_file(g["file"]))
            extra = GRAD_KEYS + GRAD_KEYS_FULL.get((cid, task), [])
            keep = {k: v for k, v in stored.items() if v.size <= GRAD_MAX_ELEMENTS or k in extra}
            g["level_in_full_set"], g["level"] = g["level"], "subset"
            g["stored_keys"] = sorted(keep)
            out[g["file"]] = save(keep)
    return man, out


def _load_st(data: bytes) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    return load(data)


def fbank_subset(src: Source) -> tuple[dict, dict[str, bytes]]:
    man = copy.deepcopy(src.fbank)
    names = set(FBANK_CASES)
    man["cases"] = [c for c in man["cases"] if c["name"] in names or c["group"] in FBANK_GROUPS]
    missing = names - {c["name"] for c in man["cases"]}
    if missing:
        raise SystemExit(f"fbank cases not in the source: {sorted(missing)}")
    out: dict[str, bytes] = {}
    for case in man["cases"]:
        z = read_npz(src.fbank_file(case))
        keys = FBANK_KEYS + (FBANK_KEYS_PIPELINE if case["group"] == "pipeline" else [])
        out[case["file"]] = npz_bytes({k: z[k] for k in keys if k in z})
        case["npz_bytes"] = len(out[case["file"]])
        if case["group"] == "pipeline":
            out[case["wav_file"]] = src.wav_file(case, z["waveform_raw"])
    return man, out


def build(src_root: Path) -> dict[str, bytes]:
    """{path relative to this folder: bytes} of the whole subset (manifests included)."""
    src = Source(src_root)
    source_ref = {"format": src.model["format"], "made_by": "tests/golden_subset/make_subset.py",
                  "readme": "tests/golden_subset/README.md"}
    files: dict[str, bytes] = {}
    man, out = model_subset(src)
    man["subset"] = dict(source_ref, source_manifest_sha256=file_sha(
        (src_root / "model" / "manifest.json").read_bytes()), cases=MODEL_CASES,
        grad_rule={"max_elements": GRAD_MAX_ELEMENTS, "keys": GRAD_KEYS,
                   "keys_full": {f"{c}.{t}": k for (c, t), k in GRAD_KEYS_FULL.items()}})
    man["files"] = {rel: {"bytes": len(d), "sha256": file_sha(d)} for rel, d in sorted(out.items())}
    man["total_bytes"] = sum(len(d) for d in out.values())
    files.update({f"model/{rel}": d for rel, d in out.items()})
    files["model/manifest.json"] = (json.dumps(man, indent=1) + "\n").encode()

    man, out = fbank_subset(src)
    man["subset"] = dict(source_ref, source_manifest_sha256=file_sha(
        (src_root / "fbank" / "manifest.json").read_bytes()), npz_keys=FBANK_KEYS,
        npz_keys_pipeline=FBANK_KEYS + FBANK_KEYS_PIPELINE,
        files={rel: {"bytes": len(d), "sha256": file_sha(d)} for rel, d in sorted(out.items())})
    files.update({f"fbank/{rel}": d for rel, d in out.items()})
    files["fbank/manifest.json"] = (json.dumps(man, indent=1) + "\n").encode()
    return files


def same_content(rel: str, a: bytes, b: bytes) -> bool:
    """Equal bytes, or equal arrays/JSON (compressors may differ between machines)."""
    if a == b:
        return True
    if rel.endswith(".npz"):
        x, y = read_npz(a), read_npz(b)
    elif rel.endswith(".safetensors"):
        x, y = _load_st(a), _load_st(b)
    elif rel.endswith(".json"):
        x, y = json.loads(a), json.loads(b)
        for m in (x, y):  # the hashes of compressed files follow the bytes
            m.pop("files", None), m.pop("total_bytes", None), m.get("subset", {}).pop("files", None)
            for c in m.get("cases", []) if isinstance(m.get("cases"), list) else []:
                c.pop("npz_bytes", None)
        return x == y
    else:
        return False
    return x.keys() == y.keys() and all(
        x[k].dtype == y[k].dtype and x[k].shape == y[k].shape and
        np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f") for k in x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=REPO.parent / "shared" / "golden",
                    help="the full fixture set (default: ../shared/golden)")
    ap.add_argument("--out", type=Path, default=HERE, help="where the subset goes (default: here)")
    ap.add_argument("--check", action="store_true",
                    help="compare the subset at --out with what --src gives; write nothing")
    args = ap.parse_args()
    files = build(args.src)
    total = sum(len(d) for d in files.values())
    if args.check:
        present = {str(p.relative_to(args.out)) for p in args.out.rglob("*")
                   if p.is_file() and p.parent != args.out}
        bad = sorted(rel for rel, d in files.items()
                     if not (args.out / rel).is_file() or not same_content(rel, (args.out / rel).read_bytes(), d))
        extra = sorted(present - set(files) - {p for p in present if "__pycache__" in p})
        if bad or extra:
            raise SystemExit(f"subset out of date: differing {bad}, unexpected {extra}")
        print(f"subset matches {args.src}: {len(files)} files, {total / 1e6:.2f} MB")
        return
    for rel, d in files.items():
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(d)
    print(f"wrote {len(files)} files, {total / 1e6:.2f} MB, to {args.out}")


if __name__ == "__main__":
    main()
