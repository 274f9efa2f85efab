"""Customizer service: LoRA SFT, encoder-classifier and embedding-distillation students (issue #5)."""
