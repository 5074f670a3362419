"""The on-disk cache: a trained tokenizer and the token files it produced, keyed by content.

Files for corpus fingerprint F (the corpus's content, see ``corpus.Source.fingerprint``) and
vocab size V, with ``K = F[:20]-vV-tTOKENIZER_VERSIONsSAMPLE_BYTES``, T the start of the sha256
of the tokenizer's JSON and L the training-story limit (a number or ``all``):

- ``bpe-K-T.json``: the tokenizer (one per corpus and vocab size, shared by every limit);
- ``tokens-K-T-nL-cCACHE_VERSION.json``: the manifest (dtype, and the token count and sha256 of
  each split) with ``.train.bin`` and ``.valid.bin`` beside it: raw little-endian token ids,
  read back through a read-only memory map (loading copies nothing; pages come in as read);
- ``size-F[:20]-rREADER_VERSION.json``: the number and UTF-8 bytes of the corpus's training
  stories (what sizing the corpus to a budget needs; ``study.data.budget``).

T in every name means token files are never paired with a tokenizer that did not make them, and a
tokenizer file is checked against its own name. Everything is written through
``study.fileio.atomic_write`` (temporary file, fsync, ``os.replace``) and the manifest goes last;
a reader checks the manifest's sizes and hashes, so a killed writer or a damaged file means a
rebuild, never a wrong answer. Builders of one key take a lock so concurrent trials build once;
where locks are unavailable the atomic writes alone keep concurrent builders safe (they write
identical files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from study.fileio import atomic_write, atomic_write_bytes, write_json

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

# 2: raw .bin token files read through a memory map, built incrementally; limit in the name.
CACHE_VERSION = 2
# Part of the tokenizer's key: bump it when the training sample or settings change.
# 2: trained on the first bpe.TOKENIZER_SAMPLE_BYTES of training text (was a spread sample).
TOKENIZER_VERSION = 2
SPLITS = ("train", "valid")
_HASH_CHUNK = 1 << 22


def tokenizer_key(fingerprint: str, vocab_size: int, *, sample_bytes: int) -> str:
    """Names what decides a tokenizer: the corpus, the vocab size, the training sample's size
    and the training code's version."""
    return f"{fingerprint[:20]}-v{vocab_size}-t{TOKENIZER_VERSION}s{sample_bytes}"


def _tokenizer_path(cache_dir: Path, key: str, sha: str) -> Path:
    return cache_dir / f"bpe-{key}-{sha[:16]}.json"


def manifest_path(cache_dir: Path, key: str, tokenizer_sha: str, max_stories: int | None) -> Path:
    limit = "all" if max_stories is None else str(max_stories)
    return cache_dir / f"tokens-{key}-{tokenizer_sha[:12]}-n{limit}-c{CACHE_VERSION}.json"


def size_path(cache_dir: Path, fingerprint: str, reader_version: int) -> Path:
    return cache_dir / f"size-{fingerprint[:20]}-r{reader_version}.json"


@contextlib.contextmanager
def build_lock(cache_dir: Path, key: str) -> Iterator[None]:
    """Hold an exclusive lock for building ``key`` (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: rely on atomic writes alone
        yield
        return
    try:
        handle = open(cache_dir / f".lock-{key}", "a+b")  # noqa: SIM115 (held across the yield)
    except OSError as exc:
        log.warning("cannot create a lock file in %s (%s); building without a lock", cache_dir, exc)
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is building the token cache %s; waiting for it", key)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. a file system without locks
            log.warning("cannot lock %s (%s); building without a lock", handle.name, exc)
        yield


# --------------------------------------------------------------------------------- tokenizer


def tokenizer_sha256(tokenizer: Tokenizer) -> str:
    """sha256 of the tokenizer's JSON, as save_tokenizer writes it."""
    return hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()


def save_tokenizer(cache_dir: Path, key: str, tokenizer: Tokenizer) -> None:
    data = tokenizer.to_str().encode("utf-8")
    atomic_write_bytes(_tokenizer_path(cache_dir, key, hashlib.sha256(data).hexdigest()), data)


def load_tokenizer(cache_dir: Path, key: str) -> tuple[Tokenizer, str] | None:
    """The cached tokenizer for ``key`` and the sha256 of its JSON, or None.

    The file name carries the start of the JSON's sha256, so a damaged file that still parses
    is caught too. Damaged files are logged and removed.
    """
    from tokenizers import Tokenizer

    from study.data.corpus import EOT

    for path in sorted(cache_dir.glob(f"bpe-{key}-*.json")):
        try:
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            if path != _tokenizer_path(cache_dir, key, sha):
                raise ValueError("checksum mismatch")
            tokenizer = Tokenizer.from_str(data.decode("utf-8"))
            if tokenizer.token_to_id(EOT) is None:
                raise ValueError(f"no {EOT} token")
        except FileNotFoundError:  # removed by a concurrent reader
            continue
        except Exception as exc:  # tokenizers raises bare Exception on bad JSON
            log.warning("cached tokenizer %s is corrupt (%s); rebuilding", path, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        return tokenizer, sha
    return None


# ------------------------------------------------------------------------------- token files


class SplitFile:
    """One split's token file while it is written: appends arrays, counting and hashing them."""

    def __init__(self, f: IO[bytes], dtype: np.dtype) -> None:
        self._f, self._dtype = f, dtype
        self.tokens = 0
        self.sha256 = hashlib.sha256()

    def append(self, ids: np.ndarray) -> None:
        data = np.ascontiguousarray(ids, dtype=self._dtype).tobytes()
        self._f.write(data)
        self.sha256.update(data)
        self.tokens += ids.size


def write_arrays(
    path: Path,
    fill: Callable[[dict[str, SplitFile]], None],
    *,
    dtype: np.dtype,
    meta: dict[str, Any],
) -> dict[str, int]:
    """Write the token files of manifest ``path``: ``fill`` appends each split's ids in turn.

    Each file is published whole (``atomic_write``) once ``fill`` returns, then the manifest that
    vouches for them. An exception from ``fill`` leaves no file behind. Returns tokens per split.
    """
    files: dict[str, SplitFile] = {}

    def open_splits(pending: tuple[str, ...]) -> None:
        if not pending:
            fill(files)
            return

        def write(f: IO[bytes]) -> None:
            files[pending[0]] = SplitFile(f, dtype)
            open_splits(pending[1:])

        atomic_write(_array_path(path, pending[0]), write)

    open_splits(SPLITS)
    splits = {s: {"tokens": f.tokens, "sha256": f.sha256.hexdigest()} for s, f in files.items()}
    write_json(path, {"version": CACHE_VERSION, **meta, "dtype": dtype.str, "splits": splits})
    return {s: f.tokens for s, f in files.items()}


def load_arrays(path: Path, *, meta: dict[str, Any]) -> dict[str, np.memmap] | None:
    """Read-only memory maps of the files a manifest vouches for, or None when absent, stale or
    failing their size or sha256 check (the check reads each file once, in chunks)."""
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("token cache manifest %s is corrupt (%s); rebuilding", path, exc)
        return None
    expected = {"version": CACHE_VERSION, **meta}
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        log.warning("token cache manifest %s does not match this corpus; rebuilding", path)
        return None
    arrays: dict[str, np.memmap] = {}
    for split in SPLITS:
        array_file = _array_path(path, split)
        try:
            entry, dtype = manifest["splits"][split], np.dtype(manifest["dtype"])
            problem = _check(
                array_file,
                tokens=int(entry["tokens"]),
                itemsize=dtype.itemsize,
                sha256=entry["sha256"],
            )
            if problem is None:
                arrays[split] = np.memmap(
                    array_file, dtype=dtype, mode="r", shape=(int(entry["tokens"]),)
                )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = str(exc) or type(exc).__name__
        if problem:
            log.warning("token cache file %s is corrupt (%s); rebuilding", array_file, problem)
            return None
    return arrays


def _array_path(manifest: Path, split: str) -> Path:
    return manifest.with_suffix(f".{split}.bin")


def _check(path: Path, *, tokens: int, itemsize: int, sha256: str) -> str | None:
    size = path.stat().st_size
    if size != tokens * itemsize or tokens < 1:
        return f"expected {tokens} tokens of {itemsize} bytes, found {size} bytes"
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return None if digest.hexdigest() == sha256 else "checksum mismatch"
