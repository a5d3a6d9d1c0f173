"""benchmarks/gpu_suite.py without a GPU: the dry run (CPU, small shapes, Triton interpreted)
goes through every section and writes its JSON, log and final table; a section that would pass
the deadline is skipped, not killed; --list; no CUDA device and no --dry-run: a line, exit 0."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "gpu_suite.py"


def _suite(*args: str, timeout: int = 900, interpret: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if not interpret:
        env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


def _sections() -> list[str]:
    res = _suite("--list")
    assert res.returncode == 0, res.stderr[-2000:]
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


def test_dry_run_exercises_every_section(tmp_path):
    res = _suite("--dry-run", "--out", str(tmp_path))
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert set(report["sections"]) == {"preflight", *_sections()}
    for name, sec in report["sections"].items():
        assert "error" not in sec and "skipped" not in sec, (name, sec)
        if sec["kind"] == "check":
            assert sec["failures"] == 0, name
            assert all(str(r[-1]).startswith(("PASS", "SKIP", "n/a")) for r in sec["rows"]), (name, sec["rows"])
    final = {(line[0], line[1]): line for line in report["final"]}
    for item in ("Triton / best SDPA (attention fwd+bwd)", "auto / best (attention fwd+bwd)",
                 "fbank real-time factor (auto, 10 s clips)",
                 "joint step: ours (bf16, compile, 2 passes) / reference fp32",
                 "joint step MFU (ours, 2 passes)"):
        assert any(k[1] == item and v[-1] == "n/a (dry run)" for k, v in final.items()), item
    log = (tmp_path / "gpu_suite.log").read_text()
    assert "== final" in log and "correctness: PASS" in log and "all sections passed" in log
    for row in report["sections"]["attention/parity"]["rows"]:  # shapes and layouts covered
        assert row[-1] == "PASS", row


def test_a_section_past_the_deadline_is_skipped(tmp_path):
    res = _suite("--dry-run", "--out", str(tmp_path), "--only", "model/joint_step", "--deadline", "1")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "SKIPPED (budget)" in res.stdout
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert report["sections"]["model/joint_step"] == {"kind": "bench", "skipped": "SKIPPED (budget)"}
    assert ["model/joint_step", "section"] == report["final"][0][:2]


def test_golden_rows_say_why_without_fixtures(tmp_path):
    res = _suite("--dry-run", "--out", str(tmp_path), "--only", "model/golden", "--golden",
                 str(tmp_path / "nowhere"))
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    rows = json.loads((tmp_path / "gpu_suite.json").read_text())["sections"]["model/golden"]["rows"]
    # no fixtures there: one row saying so (or, where tests/golden.py falls back to a subset the
    # repository carries, rows that pass)
    assert (len(rows) == 1 and "no golden fixtures" in rows[0][-1]) or all(r[-1] == "PASS" for r in rows)


def test_without_a_gpu_it_says_so():
    res = _suite(interpret=False)
    assert res.returncode == 0 and "no CUDA device" in res.stdout
