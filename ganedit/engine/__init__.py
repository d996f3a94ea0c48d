"""Training loops shared by the procedures (adversarial fine-tuning for `unlearn` and `merge`)."""
