"""Building the token cache streams: memory stays bounded by a batch, not by the corpus."""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from study.data import bpe, corpus, load_tokens

REPO = Path(__file__).resolve().parents[1]

# Builds the cache of a corpus in a fresh process and reports its peak resident memory.
MEASURE = """
import json, resource, sys
from pathlib import Path
from study.data import load_tokens
d = load_tokens(sys.argv[1], vocab_size=4096, cache_dir=Path(sys.argv[2]), max_stories=None)
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "tokens": int(d.train.size)}))
"""


def _peak_rss_building(data: Path, cache_dir: Path) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(data), str(cache_dir)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _stories_text(stories: list[str]) -> str:
    return "".join(f"{s}\n{corpus.EOT}\n" for s in stories)


@pytest.mark.slow
def test_cache_of_a_corpus_larger_than_its_memory_reads_back_exactly(
    tinystories: Path, tmp_path: Path
) -> None:
    text = lzma.open(tinystories / "train.txt.xz", "rt", encoding="utf-8").read()
    stories = [s.strip() for s in text.split(f"\n{corpus.EOT}\n") if s.strip()]
    half = stories[: len(stories) // 2]  # about 10.6 MB
    head = bpe.tokenizer_sample(half)  # both corpora start with it: one tokenizer
    small, big = tmp_path / "small", tmp_path / "big"
    for folder in (small, big):
        folder.mkdir()
        (folder / "valid.txt.xz").write_bytes((tinystories / "valid.txt.xz").read_bytes())
    (small / "train.txt").write_text(
        _stories_text(head + half[len(head) : len(head) + 300]), encoding="utf-8"
    )
    (big / "train.txt").write_text(_stories_text(half) * 2, encoding="utf-8")  # 21 MB, 5.4 M tok
    grown = (big / "train.txt").stat().st_size - (small / "train.txt").stat().st_size

    base = _peak_rss_building(small, tmp_path / "k")
    peak = _peak_rss_building(big, tmp_path / "k")
    # Holding the text (>= `grown` bytes as str) or the token array (~grown / 2 bytes) would
    # grow the peak by that much; streaming grows it by a few batches' worth at most.
    growth = (peak["peak_kib"] - base["peak_kib"]) * 1024
    assert growth < grown / 5, f"peak RSS grew {growth / 1e6:.1f} MB for {grown / 1e6:.1f} MB"

    data = load_tokens(str(big), vocab_size=4096, cache_dir=tmp_path / "k", max_stories=None)
    assert data.train.size == peak["tokens"]
    tokenizer = data.tokenizer
    once = [
        np.array([*enc.ids, data.eot_id], dtype=np.uint16)
        for enc in tokenizer.encode_batch(half, add_special_tokens=False)
    ]
    expected = np.concatenate(once * 2)
    assert np.array_equal(data.train, expected)
