"""The demo (main job): a generated spoken-keyword corpus, pretraining, fine-tuning vs scratch."""
