"""Training: pretraining and fine-tuning loops, metrics, distributed set-up, shared helpers.

Submodules are imported on use (``from ssast_fast.train.pretrain import pretrain``) so that
``import ssast_fast.train.metrics`` stays light.
"""
