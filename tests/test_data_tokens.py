"""load_tokens end to end: bad input as one line, lazy imports, the shared TinyStories corpus."""

from __future__ import annotations

import gzip
import lzma
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datastories import VOCAB, make_stories, write_corpus, write_text

from study.data import corpus, decode, load_tokens
from study.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


def _bad_inputs(tmp: Path) -> dict[str, tuple[str, dict[str, object], str]]:
    """name -> (data path, load_tokens kwargs, regex the message must match)."""
    good = write_text(tmp / "good.txt", make_stories(20))
    (tmp / "empty.txt").write_text("")
    (tmp / "blank.txt").write_text(f"\n  \n{corpus.EOT}\n\n{corpus.EOT}\n")
    (tmp / "one.txt").write_text("A single story.\n")
    (tmp / "latin1.txt").write_bytes("Zoë went home.".encode("latin-1"))
    xz = lzma.compress("\n".join(make_stories(200)).encode())
    (tmp / "truncated.txt.xz").write_bytes(xz[: len(xz) // 2])
    (tmp / "garbage.txt.xz").write_bytes(b"this is not xz data at all" * 10)
    gz = gzip.compress("\n".join(make_stories(200)).encode())
    (tmp / "truncated.txt.gz").write_bytes(gz[: len(gz) // 2])
    write_corpus(tmp / "whole.parquet", make_stories(50))
    raw = (tmp / "whole.parquet").read_bytes()
    (tmp / "truncated.parquet").write_bytes(raw[: len(raw) // 2])
    (tmp / "garbage.parquet").write_bytes(b"PAR1 garbage")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["a story"]}), tmp / "nocolumn.parquet")
    (tmp / "badjson.jsonl").write_text('{"text": "fine"}\n{"text": unquoted}\n')
    (tmp / "notext.jsonl").write_text('{"text": "fine"}\n{"story": "wrong key"}\n')
    (tmp / "nofiles").mkdir()
    (tmp / "nofiles" / "readme.md").write_text("# nothing here")
    (tmp / "onlyvalid").mkdir()
    write_text(tmp / "onlyvalid" / "valid.txt", make_stories(3))
    (tmp / "emptyvalid").mkdir()
    write_text(tmp / "emptyvalid" / "train.txt", make_stories(3))
    (tmp / "emptyvalid" / "valid.txt").write_text("")
    (tmp / "corpus.csv").write_text("text\nhello\n")
    ok = str(good)
    return {
        "missing path": (str(tmp / "nope.txt"), {}, r"does not exist: .*nope\.txt"),
        "empty file": (str(tmp / "empty.txt"), {}, r"empty corpus: .*no stories"),
        "blank stories only": (str(tmp / "blank.txt"), {}, r"empty corpus: .*no stories"),
        "single story": (str(tmp / "one.txt"), {}, r"only 1 story"),
        "not utf-8": (str(tmp / "latin1.txt"), {}, r"latin1\.txt: not UTF-8"),
        "truncated xz": (str(tmp / "truncated.txt.xz"), {}, r"truncated\.txt\.xz: truncated"),
        "garbage xz": (str(tmp / "garbage.txt.xz"), {}, r"cannot read .*garbage\.txt\.xz"),
        "truncated gz": (str(tmp / "truncated.txt.gz"), {}, r"truncated\.txt\.gz: truncated"),
        "truncated parquet": (str(tmp / "truncated.parquet"), {}, r"cannot read .*\.parquet"),
        "garbage parquet": (str(tmp / "garbage.parquet"), {}, r"cannot read .*garbage\.parquet"),
        "parquet without text": (str(tmp / "nocolumn.parquet"), {}, r"no \"text\" column"),
        "bad jsonl": (str(tmp / "badjson.jsonl"), {}, r"badjson\.jsonl: line 2 is not JSON"),
        "jsonl without text": (str(tmp / "notext.jsonl"), {}, r"line 2 is not an object with"),
        "folder of nothing": (str(tmp / "nofiles"), {}, r"no supported data files .*nofiles"),
        "only held-out files": (str(tmp / "onlyvalid"), {}, r"no training files"),
        "empty held-out file": (str(tmp / "emptyvalid"), {}, r"no stories in the held-out"),
        "unsupported suffix": (str(tmp / "corpus.csv"), {}, r"unsupported data file .*\.csv"),
        "vocab too small": (ok, {"vocab_size": 256}, r"vocab_size must be at least 257"),
        "vocab beyond uint32": (ok, {"vocab_size": 2**32}, r"vocab_size .* fit uint32"),
        "vocab not an int": (ok, {"vocab_size": 4096.0}, r"vocab_size must be an integer"),
        "vocab a bool": (ok, {"vocab_size": True}, r"vocab_size must be an integer"),
        "max_stories zero": (ok, {"max_stories": 0}, r"max_stories must be at least 1"),
        "max_stories a word": (ok, {"max_stories": "many"}, r"positive integer or auto"),
        "max_stories a float": (ok, {"max_stories": 10.0}, r"max_stories must be an integer"),
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    return _bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize(
    "name",
    [
        "missing path",
        "empty file",
        "blank stories only",
        "single story",
        "not utf-8",
        "truncated xz",
        "garbage xz",
        "truncated gz",
        "truncated parquet",
        "garbage parquet",
        "parquet without text",
        "bad jsonl",
        "jsonl without text",
        "folder of nothing",
        "only held-out files",
        "empty held-out file",
        "unsupported suffix",
        "vocab too small",
        "vocab beyond uint32",
        "vocab not an int",
        "vocab a bool",
        "max_stories zero",
        "max_stories a word",
        "max_stories a float",
    ],
)
def test_bad_input_raises_usage_error(
    name: str, bad_inputs: dict[str, tuple], tmp_path: Path
) -> None:
    data, kwargs, pattern = bad_inputs[name]
    with pytest.raises(UsageError, match=pattern) as info:
        load_tokens(data, cache_dir=tmp_path / "k", **{"vocab_size": VOCAB, **kwargs})
    assert "\n" not in str(info.value)
    # Nothing was cached for a corpus that failed.
    assert not list((tmp_path / "k").glob("tokens-*"))


@pytest.mark.slow
def test_importing_and_local_loading_need_neither_datasets_nor_pyarrow(tmp_path: Path) -> None:
    write_text(tmp_path / "c.txt", make_stories(50))
    script = (
        "import sys; from pathlib import Path; import study.data\n"
        "heavy = ('datasets', 'pyarrow', 'pandas', 'tokenizers')\n"
        "before = {m for m in heavy if m in sys.modules}\n"
        f"study.data.load_tokens({str(tmp_path / 'c.txt')!r}, vocab_size={VOCAB}, "
        f"cache_dir=Path({str(tmp_path / 'k')!r}))\n"
        "after = {m for m in heavy[:3] if m in sys.modules}\n"
        "print(sorted(before), sorted(after))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["[]", "[]"]


# ------------------------------------------------------------------------------- real corpus


@pytest.mark.slow
def test_real_corpus(tinystories: Path, cache_dir: Path) -> None:
    # Sized for a CUDA device, auto takes the whole corpus (as a study on a GPU would).
    data = load_tokens(
        str(tinystories), vocab_size=4096, cache_dir=cache_dir, budget=300.0, device="cuda"
    )
    assert data.max_stories == 27_283
    assert data.train.dtype == np.uint16
    assert data.source.endswith(
        "(train: train.txt.xz, at most 27283 stories; held out: valid.txt.xz)"
    )
    assert np.count_nonzero(data.train == data.eot_id) == 27_283  # stories, per SOURCES.md
    assert np.count_nonzero(data.valid == data.eot_id) == 814
    assert 5_000_000 < data.train.size < 5_700_000
    # SOURCES.md: 21,660,471 bytes, of which each story's "\n<|endoftext|>\n" is 15; EOT counts 1.
    assert int(data.token_bytes[data.train].sum()) == 21_660_471 - 27_283 * 14
    assert int(data.token_bytes[data.valid].sum()) == 633_876 - 814 * 14
    assert decode(data.tokenizer, data.train[:12]).startswith("Once upon a time there was")
