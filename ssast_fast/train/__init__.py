"""Training, one module per concern (nothing is imported here: ``import ssast_fast.train.metrics``
stays light).

- :mod:`.config`: the typed settings of a run (``PretrainConfig``, ``FinetuneConfig``) and of
  ``eval`` / ``embed`` (``EvalConfig``, ``EmbedConfig``).
- :mod:`.build`: the model (new, from pretrained weights, around a saved state dict), the front
  end, datasets and loaders, the step input, precision.
- :mod:`.state`: seeding, checkpoint files, resuming exactly.
- :mod:`.logs`: metrics log, ``result.csv``, ``summary.json``, throughput, printed summary, plots.
- :mod:`.schedules`: warm-up, plateau and epoch-decay lr schedules.
- :mod:`.loop`: the one training loop; :mod:`.stage`: what a stage plugs into it.
- :mod:`.pretrain`, :mod:`.finetune`: the two stages, ``pretrain(config)`` and ``finetune(config)``.
- :mod:`.evaluation`: scoring a classifier on a dataset; :mod:`.metrics`: mAP, AUC, d-prime, ...
- :mod:`.inference`: ``eval`` and ``embed``.
- :mod:`.backends`: kernel choices settled before training; :mod:`.distributed`: torchrun / DDP;
  :mod:`.progress`: progress bar or lines.
"""
