"""``python -m bench``: training tokens/s of the trainer against a textbook GPT-2 (issue 6)."""
