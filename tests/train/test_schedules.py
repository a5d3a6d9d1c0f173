"""The reference warm-up cadence and the fine-tuning optimizer groups."""
import pytest

from ssast_fast.train.schedules import warmup_lr


def test_warmup_matches_reference_cadence():
    ref = {s: s / 1000 * 1e-4 for s in range(0, 1001) if s % 50 == 0}  # reference: step <= 1000 and step % 50 == 0
    ours = {s: warmup_lr(s, 1e-4) for s in range(0, 1200)}
    assert {s: v for s, v in ours.items() if v is not None} == pytest.approx(ref)
    assert warmup_lr(0, 1e-4) == 0.0 and warmup_lr(1001, 1e-4) is None
    assert [warmup_lr(s, 1.0, 30) for s in (0, 1, 29, 30, 31)] == [0.0, 1 / 30, 29 / 30, 1.0, None]


def test_head_lr_group():
    from ssast_fast import ASTModel
    from ssast_fast.train.finetune import param_groups

    sd = ASTModel(model_size="tiny", fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128,
                  input_tdim=32).state_dict()
    m = ASTModel(label_dim=3, model_size="tiny", fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128,
                 input_tdim=32, pretrain_stage=False, load_pretrained_mdl_path=sd)
    base, head = param_groups(m, 1e-4, 10)
    assert head["lr"] == pytest.approx(1e-3) and base["lr"] == 1e-4
    assert len(head["params"]) == 4  # mlp_head LayerNorm + Linear, weight and bias
