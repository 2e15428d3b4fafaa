"""sft: QLoRA supervised fine-tuning of one module (its config, training and command line)."""
