"""``python -m bench``: training tokens/s of the trainer against a textbook GPT-2 run plain, tuned
and CUDA-graphed (``bench.run`` says what each column is); ``python -m bench.profile``: where a
step's device time goes."""
