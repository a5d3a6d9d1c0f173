"""Export test helpers: tiny fine-tuned models of every kind, a generated clip, our front end."""
import numpy as np
import torch

from ssast_fast import ASTModel
from ssast_fast.model.encoder import SizeSpec

EXPORT_PACKAGES = ("onnx", "onnxruntime", "onnxscript", "transformers")
# Test-only sizes: two 64-wide blocks keep the exporters fast; every code path is the same.
TEST_SIZES = {"t2": SizeSpec(64, 2, 2, 2), "t2_nokd": SizeSpec(64, 2, 2, 1)}
SR = 16000
# (task, model size, patch, stride, frames, bins): ft_avgtok and ft_cls, patch and frame, 2 and 1 cls tokens
KINDS = {
    "avgtok_patch_2cls": ("ft_avgtok", "t2", (16, 16), (10, 12), 64, 48),
    "cls_patch_2cls": ("ft_cls", "t2", (16, 16), (8, 10), 60, 40),
    "cls_frame_1cls": ("ft_cls", "t2_nokd", (32, 2), (32, 1), 40, 32),
    "avgtok_frame_1cls": ("ft_avgtok", "t2_nokd", (32, 2), (32, 2), 48, 32),
    "cls_rect_2cls": ("ft_cls", "t2", (16, 8), (16, 8), 64, 32),
}


def build_model(kind: str, n_class: int = 5, seed: int = 0) -> tuple[ASTModel, str]:
    """(fine-tuned ASTModel of ``kind`` in eval mode, its task); the TEST_SIZES must be registered."""
    task, size, (fs, ts), (fst, tst), frames, bins = KINDS[kind]
    torch.manual_seed(seed)
    skel = ASTModel(fshape=fs, tshape=ts, fstride=fs, tstride=ts, input_fdim=bins, input_tdim=frames, model_size=size)
    model = ASTModel(label_dim=n_class, fshape=fs, tshape=ts, fstride=fst, tstride=tst, input_fdim=bins,
                     input_tdim=frames, model_size=size, pretrain_stage=False,
                     load_pretrained_mdl_path=skel.state_dict())
    with torch.no_grad():  # a head with some spread, as after training
        model.mlp_head[1].weight.normal_(0.0, 0.5)
        model.mlp_head[1].bias.normal_(0.0, 0.1)
    return model.eval(), task


def clip(seconds: float = 0.6, seed: int = 0) -> np.ndarray:
    """A generated 16 kHz clip: a decaying chirp-like chord plus a little noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in zip((0.3, 0.2, 0.1), rng.uniform(150, 3000, 3),
                                                                   rng.uniform(0, 6, 3)))
    x = x * np.exp(-1.5 * t) + 0.02 * rng.standard_normal(t.shape)
    return x.astype(np.float32)


def frontend_input(model: ASTModel, wave: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """ssast_fast's own front end on ``wave`` -> the model input [1, frames, bins]."""
    from ssast_fast.features import FrontEnd

    fe = FrontEnd(sample_rate=SR, num_mel_bins=model.input_fdim, target_length=model.input_tdim, mean=mean, std=std)
    return fe.eval()([torch.from_numpy(wave)])
