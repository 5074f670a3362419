"""Corpus, tokenizer and token cache: what a training job reads before its clock starts.

``load_tokens`` is the entry point; see :mod:`study.data.tokens`. Submodules: ``corpus``
(stories from files or the hub), ``bpe`` (tokenizer and encoding), ``cache`` (files on disk).
"""

from __future__ import annotations

from study.data.bpe import decode, encode
from study.data.tokens import TokenData, default_cache_dir, load_tokens

__all__ = ["TokenData", "decode", "default_cache_dir", "encode", "load_tokens"]
