"""The on-disk cache: a trained tokenizer and the token arrays it produced, keyed by corpus.

Files for corpus fingerprint F and vocab size V (``K = F[:20]-vV-cVERSION``), where T is the
start of the sha256 of the tokenizer's JSON: ``bpe-K-T.json`` (the tokenizer), ``tokens-K-T.json``
(manifest: length and sha256 of each split), ``tokens-K-T.train.npy`` and
``tokens-K-T.valid.npy``. T in every name means arrays are never paired with a tokenizer that
did not make them, and a tokenizer file is checked against its own name.

Every file is written to a temporary file in the same folder and moved into place with
``os.replace``, and the manifest goes last; a reader checks the manifest's hashes, so a killed
writer or a damaged file means a rebuild, never a wrong answer. Builders of one key take a lock
so concurrent trials build once; where locks are unavailable the atomic writes alone keep
concurrent builders safe (they write identical files).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

CACHE_VERSION = 1
SPLITS = ("train", "valid")


def cache_key(fingerprint: str, vocab_size: int) -> str:
    return f"{fingerprint[:20]}-v{vocab_size}-c{CACHE_VERSION}"


def _tokenizer_path(cache_dir: Path, key: str, sha: str) -> Path:
    return cache_dir / f"bpe-{key}-{sha[:16]}.json"


def manifest_path(cache_dir: Path, key: str, tokenizer_sha: str) -> Path:
    return cache_dir / f"tokens-{key}-{tokenizer_sha[:12]}.json"


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` whole or not at all: temp file in the same folder, fsync, os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like any file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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


def tokenizer_sha256(tokenizer: Tokenizer) -> str:
    """sha256 of the tokenizer's JSON, as save_tokenizer writes it."""
    return hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()


def save_tokenizer(cache_dir: Path, key: str, tokenizer: Tokenizer) -> None:
    data = tokenizer.to_str().encode("utf-8")
    sha = hashlib.sha256(data).hexdigest()
    write_atomic(_tokenizer_path(cache_dir, key, sha), lambda f: f.write(data))


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


def save_arrays(path: Path, arrays: dict[str, np.ndarray], *, meta: dict[str, Any]) -> None:
    """Write each split's array, then the manifest that vouches for them."""
    manifest: dict[str, Any] = {"version": CACHE_VERSION, **meta, "splits": {}}
    for split, array in arrays.items():
        write_atomic(_array_path(path, split), functools.partial(_save_npy, array=array))
        manifest["splits"][split] = {
            "tokens": int(array.size), "dtype": array.dtype.name, "sha256": _sha256(array),
        }
    text = json.dumps(manifest, indent=1, sort_keys=True).encode()
    write_atomic(path, lambda f: f.write(text))


def load_arrays(path: Path, *, meta: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The arrays a manifest vouches for, or None when absent, stale or failing its checks."""
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
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        array_file = _array_path(path, split)
        try:
            entry = manifest["splits"][split]
            array = np.load(array_file, allow_pickle=False)
            problem = _check(array, entry)
        except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:
            problem = str(exc) or type(exc).__name__
        if problem:
            log.warning("token cache file %s is corrupt (%s); rebuilding", array_file, problem)
            return None
        arrays[split] = array
    return arrays


def _save_npy(f: IO[bytes], *, array: np.ndarray) -> None:
    np.save(f, array, allow_pickle=False)


def _array_path(manifest: Path, split: str) -> Path:
    return manifest.with_suffix(f".{split}.npy")


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _check(array: np.ndarray, entry: dict[str, Any]) -> str | None:
    if array.ndim != 1 or array.dtype.name != entry["dtype"] or array.size != entry["tokens"]:
        want = f"{entry['tokens']} {entry['dtype']} tokens"
        return f"expected {want}, found {array.dtype} array of shape {array.shape}"
    if _sha256(array) != entry["sha256"]:
        return "checksum mismatch"
    return None
