"""Datasets (reference JSON + label CSV), audio I/O and resampling, mixup and noise augmentation."""
from ssast_fast.data.audio import AudioDecodeError, load_audio, resample
from ssast_fast.data.augment import add_noise, mix_waveforms
from ssast_fast.data.dataset import AudioDataset, BadAudioError, LabelMap, collate, load_label_csv

__all__ = ["AudioDataset", "AudioDecodeError", "BadAudioError", "LabelMap", "add_noise", "collate",
           "load_audio", "load_label_csv", "mix_waveforms", "resample"]
