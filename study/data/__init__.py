"""Corpus, tokenizer and token cache: what a training job reads before its clock starts.

``load_tokens`` is the entry point and ``resolve_max_stories`` sizes the corpus to a budget; see
:mod:`study.data.tokens`. Submodules: ``corpus`` (stories from local files), ``hub`` (stories
from a ``datasets`` dataset), ``bpe`` (tokenizer and encoding), ``budget`` (the ``auto`` rule),
``build`` (streamed cache building), ``cache`` (files on disk), ``sample`` (the bundled
TinyStories sample, ``--data sample``), ``online`` (whether the hub can be reached; quiet hub
calls). ``resolve_data`` decides once which corpus ``--data`` means on this machine.
"""

from __future__ import annotations

from study.data.bpe import decode, encode
from study.data.tokens import (
    AUTO,
    TokenData,
    default_cache_dir,
    load_tokens,
    max_stories_arg,
    resolve_data,
    resolve_max_stories,
)

__all__ = [
    "AUTO",
    "TokenData",
    "decode",
    "default_cache_dir",
    "encode",
    "load_tokens",
    "max_stories_arg",
    "resolve_data",
    "resolve_max_stories",
]
