"""The model a trial kept: its checkpoint files (weights, config, tokenizer reference) and
loading one back to generate from or score, on any device."""
