"""ssast_fast.ops.dispatch on the CPU: the self-check (a launch that raises, a kernel that returns
wrong values) with exactly one warning and correct results through each op (attention, InfoNCE,
fbank, the mask kernel and the compiled reference mask generators), the measured choice with
injected timings, the traced path, checkpoint save/restore, the rank-0 broadcast (one process: a
no-op; two gloo processes: rank 0's choices), the record of all five op families and the
training hooks (summary.json, checkpoint extra, resume).

CUDA is the only kernel device; these tests patch ``dispatch.kernel_device`` so that CPU tensors
take the GPU dispatch path, with the Triton kernels in their interpreter (conftest) or replaced.
"""
from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
import torch.multiprocessing as mp

from ssast_fast.features import dispatch as FD
from ssast_fast.features import fbank
from ssast_fast.ops import attention as A
from ssast_fast.ops import dispatch
from ssast_fast.ops import infonce as I


@pytest.fixture(autouse=True)
def fresh_state():
    dispatch.reset()
    yield
    dispatch.reset()


@pytest.fixture
def cpu_as_kernel_device(monkeypatch):
    """CPU tensors take the dispatch path (self-check, measured choice)."""
    monkeypatch.setattr(dispatch, "kernel_device", lambda device: True)


def by_name(times: dict[str, float]):
    """A timer for the ops' candidates (partials whose first argument is the backend name): runs
    the candidate once, returns the injected time."""
    def timer(fn):
        fn()
        return times[fn.args[0]]
    return timer


def failing_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "ssast_fast: the" in str(w.message)]


# ---- the machinery with a fake op -----------------------------------------------------------

CPU = torch.device("cpu")


def _resolve(check, candidates=None, timer=None, choice_key="k1"):
    return dispatch.resolve("fake", CPU, kernel="kern", fallback="ref", kernel_name="fake kernel",
                            check_key="f32", check=check, choice_key=choice_key if candidates else None,
                            candidates=candidates, timer=timer)


def test_self_check_runs_once_and_a_pass_uses_the_kernel():
    calls = []
    for _ in range(3):
        assert _resolve(lambda: calls.append(1)) == "kern"
    assert len(calls) == 1
    (d,) = dispatch.record()
    assert (d["backend"], d["source"], d["reason"]) == ("kern", "self-check", "self-check passed")


@pytest.mark.parametrize("check, reason", [
    (lambda: (_ for _ in ()).throw(RuntimeError("OutOfResources: shared memory, Required: 294912")),
     "RuntimeError: OutOfResources: shared memory, Required: 294912"),
    (lambda: "out: max error 0.5 vs float64 > 0.002", "out: max error 0.5 vs float64 > 0.002"),
])
def test_failed_self_check_warns_once_and_falls_back(check, reason):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert [_resolve(check) for _ in range(4)] == ["ref"] * 4
    (msg,) = failing_warnings(rec)
    assert "fake kernel" in msg and reason in msg and "cpu" in msg
    (d,) = dispatch.record()
    assert d["backend"] == "ref" and reason in d["reason"]


def test_measured_choice_is_the_fastest_and_ties_go_to_the_first():
    ref, kern = (lambda: None), (lambda: None)
    times = {ref: 2.0, kern: 1.0}
    timer = times.__getitem__
    assert _resolve(lambda: None, lambda: {"ref": ref, "kern": kern}, timer) == "kern"
    times[kern] = 2.0  # a new key with equal times: the torch path, listed first
    assert _resolve(lambda: None, lambda: {"ref": ref, "kern": kern}, timer, "k2") == "ref"
    times[ref] = 9.0  # settled keys are not measured again
    assert _resolve(lambda: None, lambda: {"ref": ref, "kern": kern}, timer, "k2") == "ref"
    rec = {d["key"]: d for d in dispatch.record()}
    assert rec["k1"]["timings_ms"] == {"ref": 2.0, "kern": 1.0} and rec["k1"]["source"] == "measured"
    assert "kern 1.000 ms" in rec["k1"]["reason"]


def test_pick_is_deterministic_and_skips_failed_candidates():
    assert dispatch.pick({"a": 1.0, "b": 1.0, "c": 0.5})[0] == "c"
    assert dispatch.pick({"a": 1.0, "b": "RuntimeError: x"})[0] == "a"
    with pytest.raises(ValueError, match="no candidate ran"):
        dispatch.pick({"a": "RuntimeError: x"})


def test_kernel_raising_while_timed_is_disabled_with_one_warning():
    def boom():
        raise RuntimeError("OutOfResources at this shape")

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert _resolve(lambda: None, lambda: {"ref": lambda: None, "kern": boom}) == "ref"
        # another shape of the same (dtype, D): the kernel stays off, nothing is measured
        assert _resolve(lambda: None, lambda: pytest.fail("measured again"), choice_key="k2") == "ref"
    (msg,) = failing_warnings(rec)
    assert "OutOfResources at this shape" in msg


def test_nothing_runs_while_tracing_or_capturing(monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not dispatch.can_probe(CPU)
    assert _resolve(lambda: pytest.fail("checked while tracing"),
                    lambda: pytest.fail("timed while tracing")) == "ref"
    assert dispatch.record() == []  # nothing recorded from a traced region


def test_settled_choice_is_read_while_tracing(monkeypatch):
    times = {"ref": 2.0, "kern": 1.0}
    cands = {n: (lambda n=n: n) for n in times}
    assert _resolve(lambda: None, lambda: cands, lambda fn: times[fn()]) == "kern"
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert _resolve(lambda: pytest.fail("checked again"), lambda: pytest.fail("timed again")) == "kern"


def test_state_dict_round_trip_and_restored_choices_are_not_measured():
    ref, kern = (lambda: None), (lambda: None)
    _resolve(lambda: None, lambda: {"ref": ref, "kern": kern}, {ref: 3.0, kern: 1.0}.__getitem__)
    state = json.loads(json.dumps(dispatch.state_dict()))  # JSON-friendly, as in a checkpoint
    dispatch.reset()
    dispatch.load_state_dict(state)
    assert _resolve(lambda: None, lambda: pytest.fail("measured after restore")) == "kern"
    (d,) = dispatch.record()
    assert (d["backend"], d["source"], d["timings_ms"]) == ("kern", "checkpoint", {"ref": 3.0, "kern": 1.0})
    dispatch.load_state_dict(None)  # a checkpoint without choices
    for bad in ({"version": 99, "decisions": []}, {"version": 1, "decisions": [{"op": 1}]}, [1]):
        with pytest.raises(ValueError, match="dispatch state"):
            dispatch.load_state_dict(bad)


def test_restored_kernel_choice_still_needs_the_self_check():
    dispatch.load_state_dict({"version": 1, "decisions": [
        {"op": "fake", "key": "k1", "backend": "kern", "reason": "saved", "source": "measured"}]})
    with pytest.warns(RuntimeWarning, match="fake kernel"):
        assert _resolve(lambda: "wrong values", lambda: pytest.fail("measured")) == "ref"


def test_broadcast_is_a_no_op_in_one_process():
    _resolve(lambda: None, lambda: {"ref": lambda: None}, lambda fn: 1.0)
    before = dispatch.record()
    dispatch.broadcast_from_rank0()
    assert dispatch.record() == before


def _broadcast_worker(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from ssast_fast.ops import dispatch as d

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    times = {"ref": 1.0, "kern": 2.0} if rank == 0 else {"ref": 2.0, "kern": 1.0}
    cands = {n: (lambda n=n: n) for n in times}
    d.resolve("fake", torch.device("cpu"), kernel="kern", fallback="ref", kernel_name="fake kernel",
              check_key="f32", check=lambda: None, choice_key="k1", candidates=lambda: cands,
              timer=lambda fn: times[fn()])
    d.broadcast_from_rank0()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(d.record(), f)
    dist.barrier()
    dist.destroy_process_group()


def test_broadcast_gives_every_rank_rank0s_choices(tmp_path):
    init = f"file://{tmp_path / 'store'}"
    mp.start_processes(_broadcast_worker, args=(init, str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1))
    assert [d["backend"] for d in r0] == [d["backend"] for d in r1] == ["ref"]
    assert r0[0]["source"] == "measured" and r1[0]["source"] == "rank 0"


def test_bucket():
    assert [dispatch.bucket(n) for n in (1, 16, 17, 514, 1024, 1214)] == [16, 16, 32, 1024, 1024, 2048]


# ---- through the ops ----------------------------------------------------------------------


def _qkv(dtype=torch.float32, B=1, N=20, H=2, D=32, grad=True):
    qkv = torch.randn(B, N, 3, H, D, generator=torch.Generator().manual_seed(0)).to(dtype)
    return qkv.requires_grad_(grad)


def _attention_runs(qkv):
    out = A.attention_packed(qkv)
    out.sum().backward()
    grad, qkv.grad = qkv.grad, None
    return out.detach(), grad


def _raise(*args, **kwargs):
    raise RuntimeError("triton.runtime.errors.OutOfResources: out of resource: shared memory")


def _attention_wrong(q, k, v, scale):
    return A.attention_sdpa(q, k, v, scale) * 1.5


def _infonce_wrong(targets, pred):
    acc, nce = I.infonce_torch(targets, pred)
    return acc, nce * 1.01


@pytest.mark.parametrize("fault, why", [(_raise, "OutOfResources"), (_attention_wrong, "max error")])
def test_attention_fault_falls_back_to_sdpa_with_one_warning(cpu_as_kernel_device, monkeypatch, fault, why):
    monkeypatch.setattr(A, "_run_triton", fault)
    qkv = _qkv()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        results = [_attention_runs(qkv) for _ in range(3)]
    (msg,) = failing_warnings(rec)
    assert "Triton attention kernel" in msg and why in msg and "float32, D=32" in msg
    ref = _attention_runs_with(qkv, "sdpa")
    for out, grad in results:
        torch.testing.assert_close(out, ref[0])
        torch.testing.assert_close(grad, ref[1])


def _attention_runs_with(qkv, backend):
    out = A.attention_packed(qkv, backend=backend)
    out.sum().backward()
    grad, qkv.grad = qkv.grad, None
    return out.detach(), grad


@pytest.mark.skipif(not (A.HAS_TRITON and A.TRITON_INTERPRET), reason="needs the Triton interpreter")
def test_attention_auto_takes_the_measured_faster_kernel(cpu_as_kernel_device, monkeypatch):
    """The real (interpreted) kernel passes its self-check; with injected timings it wins, and
    the results are the Triton backend's."""
    monkeypatch.setattr(dispatch, "default_timer", by_name({"sdpa": 2.0, "triton": 1.0}))
    qkv = _qkv()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out, grad = _attention_runs(qkv)
    ref = _attention_runs_with(qkv, "triton")
    torch.testing.assert_close(out, ref[0])
    torch.testing.assert_close(grad, ref[1])
    (d,) = [d for d in dispatch.record() if d["op"] == "attention"]
    assert d["backend"] == "triton" and d["source"] == "measured"
    assert d["key"] == "float32, D=32, N<=32, B*H<=16, fwd+bwd"
    with torch.no_grad():  # forward only: its own key, measured again
        monkeypatch.setattr(dispatch, "default_timer", by_name({"sdpa": 1.0, "triton": 2.0}))
        torch.testing.assert_close(A.attention_packed(qkv), A.attention_packed(qkv, backend="sdpa"))
    assert {d["key"]: d["backend"] for d in dispatch.record()}["float32, D=32, N<=32, B*H<=16, fwd"] == "sdpa"


def test_attention_compiled_uses_the_settled_choice(cpu_as_kernel_device, monkeypatch):
    """Settled eagerly, read as a constant under torch.compile(fullgraph=True); no self-check or
    timing runs while tracing."""
    monkeypatch.setattr(A, "_self_check", lambda *a: None)
    monkeypatch.setattr(dispatch, "default_timer", by_name({"sdpa": 1.0, "triton": 2.0}))
    qkv = _qkv(grad=False)
    with torch.no_grad():
        eager = A.attention_packed(qkv)
    monkeypatch.setattr(A, "_self_check", lambda *a: pytest.fail("self-check while tracing"))
    monkeypatch.setattr(dispatch, "default_timer", lambda fn: pytest.fail("timing while tracing"))
    with torch.no_grad():
        compiled = torch.compile(A.attention_packed, fullgraph=True, backend="eager")(qkv)
    torch.testing.assert_close(compiled, eager)


def test_cpu_auto_is_unchanged_and_recorded():
    """No kernel device: the CPU rule (AMX for bf16 where present, else SDPA), no self-check."""
    q = torch.randn(1, 2, 8, 64)
    assert A.resolve_backend(q) == "sdpa"
    assert A.resolve_backend(q.bfloat16()) == ("amx" if A._amx.supports(q) else "sdpa")
    assert I.resolve_backend(torch.randn(1, 4, 8)) == "torch"
    ops = {(d["op"], d["source"]) for d in dispatch.record()}
    assert ops == {("attention", "rule"), ("infonce", "rule")}


@pytest.mark.parametrize("fault, why", [(_raise, "OutOfResources"), (_infonce_wrong, "nce: relative error")])
def test_infonce_fault_falls_back_to_torch_with_one_warning(cpu_as_kernel_device, monkeypatch, fault, why):
    monkeypatch.setattr(I, "_run_triton", fault)
    g = torch.Generator().manual_seed(1)
    t, p = torch.randn(2, 24, 16, generator=g), torch.randn(2, 24, 16, generator=g).requires_grad_()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        results = []
        for _ in range(3):
            acc, nce = I.infonce(t, p)
            nce.backward()
            results.append((acc, nce.detach(), p.grad))
            p.grad = None
    (msg,) = failing_warnings(rec)
    assert "Triton InfoNCE kernel" in msg and why in msg
    acc_ref, nce_ref = I.infonce_torch(t, p)
    nce_ref.backward()
    for acc, nce, grad in results:
        assert acc == acc_ref
        torch.testing.assert_close(nce, nce_ref.detach())
        torch.testing.assert_close(grad, p.grad)


@pytest.mark.skipif(not (I.HAS_TRITON and I.TRITON_INTERPRET), reason="needs the Triton interpreter")
def test_infonce_auto_takes_the_measured_faster_kernel(cpu_as_kernel_device, monkeypatch):
    monkeypatch.setattr(dispatch, "default_timer", by_name({"torch": 2.0, "triton": 1.0}))
    g = torch.Generator().manual_seed(2)
    t, p = torch.randn(2, 24, 16, generator=g), torch.randn(2, 24, 16, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        acc, nce = I.infonce(t, p)
    acc_t, nce_t = I.infonce(t, p, backend="triton")
    assert acc == acc_t and nce == nce_t
    (d,) = [d for d in dispatch.record() if d["op"] == "infonce"]
    assert (d["backend"], d["key"]) == ("triton", "float32, D=16, M<=32, B<=16, fwd")


SSAST_FBANK = dict(htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
                   num_mel_bins=128, dither=0.0, frame_shift=10)


def _fbank_wrong(waves, lengths, o, noise):
    return FD._run("torch", o, waves, lengths, noise) + 0.01


@pytest.mark.parametrize("fault, why", [(_raise, "OutOfResources"), (_fbank_wrong, "max error")])
def test_fbank_fault_falls_back_to_torch_with_one_warning(cpu_as_kernel_device, monkeypatch, fault, why):
    from ssast_fast.features import fbank_triton

    monkeypatch.setattr(fbank_triton, "fbank_triton", fault)
    wave = torch.randn(1, 4000, generator=torch.Generator().manual_seed(3)) * 0.1
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        outs = [fbank(wave, **SSAST_FBANK) for _ in range(3)]
    (msg,) = failing_warnings(rec)
    assert "Triton fbank kernel" in msg and why in msg and "16000 Hz, 128 bins" in msg
    ref = fbank(wave, backend="torch", **SSAST_FBANK)
    for out in outs:
        torch.testing.assert_close(out, ref)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs the Triton interpreter")
def test_fbank_auto_uses_the_self_checked_kernel(cpu_as_kernel_device):
    """The real (interpreted) kernel passes its self-check at SSAST's setting: auto uses it."""
    wave = torch.randn(1, 4000, generator=torch.Generator().manual_seed(4)) * 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = fbank(wave, **SSAST_FBANK)
    torch.testing.assert_close(out, fbank(wave, backend="triton", **SSAST_FBANK))
    (d,) = [d for d in dispatch.record() if d["op"] == "fbank"]
    assert (d["backend"], d["source"]) == ("triton", "self-check")


def test_fbank_mismatch_rule():
    ref = torch.log(torch.rand(5, 8, dtype=torch.float64) + 0.1)
    assert FD.fbank_mismatch(ref.float(), ref, ref.float()) is None
    assert "max error" in FD.fbank_mismatch(ref.float() + 0.01, ref, ref.float())
    assert "shape" in FD.fbank_mismatch(ref[:4].float(), ref, ref.float())
    assert FD.fbank_mismatch(ref.float() * float("nan"), ref, ref.float()) is not None


# ---- masks: the CUDA kernel's and the compiled reference generators' self-checks ------------


class _WrongMaskKernel:
    """A CUDA extension whose mask kernel returns wrong masks."""

    @staticmethod
    def masks(batch, n, m, t_dim, cluster, seed, device, generator):
        return torch.zeros(batch, m, dtype=torch.long)


def test_mask_kernel_fault_falls_back_to_tensor_ops_with_one_warning(cpu_as_kernel_device, monkeypatch):
    """CPU as the kernel device, a CUDA module whose masks differ from the host core: one
    warning, then the tensor-op path, the same masks as backend='torch' from the same seed."""
    from ssast_fast import _ext
    from ssast_fast.masking import sample_masks

    if not _ext.available():
        pytest.fail("the mask self-check compares against ssast_fast._C: build it")
    monkeypatch.setattr(_ext, "get_cuda", lambda: _WrongMaskKernel)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        got = [sample_masks(6, 512, 400, 64, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    (msg,) = failing_warnings(rec)
    assert "CUDA mask kernel failed its self-check" in msg and "different masks" in msg
    for s, idx in enumerate(got):
        want = sample_masks(6, 512, 400, 64, generator=torch.Generator().manual_seed(s), backend="torch")
        assert torch.equal(idx, want)
        assert all(len(set(row)) == 400 and min(row) >= 1 and max(row) < 512 for row in idx.tolist())
    (d,) = [d for d in dispatch.record() if d["op"] == "masks"]
    assert (d["backend"], d["source"]) == ("torch", "self-check")


def test_compiled_reference_masks_fault_falls_back_to_python_with_one_warning(monkeypatch):
    """The compiled replay of the reference generators disagreeing with this Python: one warning,
    then the pure path, with the reference's indices and random state."""
    import random

    from ssast_fast import _ext
    from ssast_fast.masking import batch_masks
    from ssast_fast.masking import dispatch as MD

    if not _ext.available():
        pytest.fail("compiled extension ssast_fast._C is not built")
    random.seed(3)
    want = batch_masks(4, 512, 400, 64, True, backend="python"), random.getstate()
    monkeypatch.setattr(MD, "check_replay", lambda ext: "cluster masks differ")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(2):
            random.seed(3)
            got = batch_masks(4, 512, 400, 64, True), random.getstate()
            assert torch.equal(got[0], want[0]) and got[1] == want[1]
    (msg,) = failing_warnings(rec)
    assert "compiled reference mask generator" in msg and "'python'" in msg
    (d,) = [d for d in dispatch.record() if d["op"] == "masks"]
    assert d["backend"] == "python"


def test_record_lists_all_five_families():
    """One pretraining forward (fast masks) of a model fed by the front end, under CPU bf16
    autocast: attention, InfoNCE, layer norm, fbank and masks are all in the record."""
    from ssast_fast import ASTModel
    from ssast_fast.features import FrontEnd

    torch.manual_seed(0)
    fe = FrontEnd(num_mel_bins=128, target_length=128)
    model = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=128,
                     model_size="tiny", pretrain_stage=True, mask_mode="fast")
    x = fe(torch.randn(2, 16000) * 0.1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x, "pretrain_mpc", mask_patch=20)
    assert {d["op"] for d in dispatch.record()} == {"attention", "infonce", "layer_norm", "fbank", "masks"}
    assert all(d["source"] == "rule" for d in dispatch.record())  # the CPU: fixed rules


# ---- training hooks -----------------------------------------------------------------------


def test_training_records_backends_and_a_resume_keeps_the_choices(tmp_path, capsys):
    from ssast_fast.cli import main
    from ssast_fast.data.synth import make_tiny_dataset

    d = make_tiny_dataset(tmp_path / "ds", n_clips=4, n_class=2, seconds=0.4, rates=(16000,))
    args = ["pretrain", "--data-train", d["train"], "--exp-dir", str(tmp_path / "pre"), "--model_size",
            "tiny", "--target_length", "32", "--fshape", "16", "--tshape", "16", "-w", "0", "--no-progress",
            "-b", "2", "--mask_patch", "6", "--epoch_iter", "2", "--warmup", "False"]
    assert main(args + ["--n-epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("kernel backends (backend='auto'") == 1 and "attention [cpu, float32" in out
    summary = json.load(open(tmp_path / "pre" / "summary.json"))
    assert {b["op"] for b in summary["backends"]} >= {"attention", "infonce"}
    # a choice measured on a GPU, saved in the checkpoint, comes back on resume
    last = tmp_path / "pre" / "checkpoints" / "last.pt"
    ck = torch.load(last, weights_only=False)
    assert ck["extra"]["dispatch"] == {"version": 1, "decisions": []}
    saved = {"op": "attention", "key": "bfloat16, D=64, N<=1024, B*H<=512, fwd+bwd", "backend": "triton",
             "reason": "measured fastest: sdpa 2.000 ms, triton 1.000 ms", "source": "measured",
             "timings_ms": {"sdpa": 2.0, "triton": 1.0}}
    ck["extra"]["dispatch"]["decisions"].append(saved)
    torch.save(ck, last)
    dispatch.reset()
    assert main(args + ["--n-epochs", "2", "--resume", "auto"]) == 0
    summary = json.load(open(tmp_path / "pre" / "summary.json"))
    restored = [b for b in summary["backends"] if b["key"] == saved["key"]]
    assert restored == [dict(saved, source="checkpoint")]
    assert torch.load(last, weights_only=False)["extra"]["dispatch"]["decisions"] == [dict(saved, source="checkpoint")]


def test_sdpa_kernel_variant_traces_fullgraph():
    """What auto may pick on CUDA, SDPA limited to one kernel, compiles without a graph break
    (here on the CPU, with its flash kernel)."""
    qkv = _qkv(grad=False)
    fn = lambda t: A.attention_packed(t, backend="sdpa:flash")  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(fn, fullgraph=True)(qkv), A.attention_packed(qkv))
