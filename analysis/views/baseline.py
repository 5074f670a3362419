"""The n-gram baselines of a corpus, scored on the held-out windows a study's trials are scored on.

What the trials share decides the baseline: the corpus (``config.data``, ``config.max_stories``),
the tokenizer (``config.model.vocab_size``) and the evaluation protocol
(``config.model.seq_len``, ``config.eval_tokens``, ``config.eval_bytes``). The windows come from
:func:`study.training.evaluate.heldout_set` on the same cached held-out array the trainer maps
(``eval_tokens`` tokens in whole windows, or with ``eval_bytes`` the same whole held-out stories
and the same shorter last window a trial of the byte protocol scores),
and bits per byte divides by the same byte count (``token_bytes`` of the targets), so a baseline
and a trial differ only in the model. Results are kept beside the corpus's token cache, one JSON
file per corpus, tokenizer and protocol, written whole (:func:`study.fileio.write_json`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.errors import UsageError

if TYPE_CHECKING:
    from study.data import TokenData

log = logging.getLogger(__name__)

METHOD = "interpolated Witten-Bell"
CACHE_VERSION = 1  # bump when the counting or scoring changes: old files are then not read
DEFAULT_ORDERS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Protocol:
    """Which corpus, tokenizer and held-out windows a baseline is scored on."""

    data: str | None
    max_stories: int | None
    vocab_size: int
    seq_len: int
    eval_tokens: int
    eval_bytes: int | None = None  # the byte protocol (whole held-out stories), else windows


@dataclass(frozen=True)
class OrderScore:
    order: int
    nll: float  # mean nats per held-out target
    ppl: float
    bpb: float
    seconds: float  # scoring the windows, rough


@dataclass(frozen=True)
class Baselines:
    """Scores of orders on one protocol; ``targets`` and ``bytes`` are what was scored."""

    method: str
    protocol: Protocol
    corpus: str
    train_tokens: int
    targets: int
    bytes: int
    scores: tuple[OrderScore, ...]
    count_seconds: float  # counting every order once, rough (the machine may be shared)

    def best(self) -> OrderScore:
        return min(self.scores, key=lambda s: s.bpb)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def study_protocol(trials: Any) -> Protocol:
    """The protocol of a study's complete trials (a frame from :mod:`analysis.load`); where
    they differ, the one most trials share (logged).

    Raises:
        UsageError: no complete trial records its config.
    """
    cols = (
        "config.data",
        "config.max_stories",
        "config.model.vocab_size",
        "config.model.seq_len",
        "config.eval_tokens",
        "config.eval_bytes",
    )
    done = trials[trials["state"] == "COMPLETE"]
    if done.empty or any(c not in done.columns for c in cols[2:5]):
        raise UsageError("the study has no complete trial that records its config")
    done = done.assign(**{c: None for c in cols if c not in done.columns})
    rows = Counter(
        tuple(_plain(v) for v in row) for row in done[list(cols)].itertuples(index=False)
    )
    (data, stories, vocab, seq_len, eval_tokens, eval_bytes), n = rows.most_common(1)[0]
    if len(rows) > 1:
        log.warning("trials differ in corpus or protocol; the baseline uses %d of %d", n, len(done))
    if vocab is None or seq_len is None or eval_tokens is None:
        raise UsageError("the study's trials do not record vocab_size, seq_len and eval_tokens")
    if isinstance(stories, str):
        raise UsageError(f"the study's trials record max_stories {stories!r}, not a number")
    if eval_bytes is not None and not isinstance(eval_bytes, (int, float)):
        raise UsageError(f"the study's trials record eval_bytes {eval_bytes!r}, not a number")
    return Protocol(
        data=data,
        max_stories=None if stories is None else int(stories),
        vocab_size=int(vocab),
        seq_len=int(seq_len),
        eval_tokens=int(eval_tokens),
        eval_bytes=None if eval_bytes is None else int(eval_bytes),
    )


def protocol_from_args(args: Any) -> Protocol:
    """The protocol a command's flags name: ``--data`` with its own flags, else the study's.

    Raises:
        UsageError: both or neither of --data and a study; a bad number; as :func:`load_study`.
    """
    if args.data is not None:
        if args.storage is not None or args.study_name is not None:
            raise UsageError("give --data or --storage/--study-name, not both")
        for flag, value, low in (
            ("--vocab-size", args.vocab_size, 257),
            ("--seq-len", args.seq_len, 1),
            ("--eval-tokens", args.eval_tokens, 1),
            ("--max-stories", args.max_stories, 1),
            ("--eval-bytes", args.eval_bytes, 1),
        ):
            if value is not None and value < low:
                raise UsageError(f"{flag} must be at least {low}, got {value}")
        return Protocol(
            data=args.data,
            max_stories=args.max_stories,
            vocab_size=args.vocab_size,
            seq_len=args.seq_len,
            eval_tokens=args.eval_tokens,
            eval_bytes=args.eval_bytes,
        )
    from analysis.load import DEFAULT_STORAGE, load_study

    study = load_study(args.storage or DEFAULT_STORAGE, args.study_name)
    return study_protocol(study.trials)


def compute_baselines(
    protocol: Protocol,
    *,
    orders: tuple[int, ...] = DEFAULT_ORDERS,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> Baselines:
    """Baselines of ``orders`` on ``protocol``: read from the cache when there, else counted,
    scored and cached.

    Raises:
        UsageError: as :func:`study.data.load_tokens`; a cache folder that cannot be written.
    """
    from study.data import load_tokens
    from study.data.tokens import default_cache_dir

    data = load_tokens(
        protocol.data,
        vocab_size=protocol.vocab_size,
        cache_dir=cache_dir,
        max_stories=protocol.max_stories,
    )
    path = _cache_path(cache_dir or default_cache_dir(), data, protocol, orders)
    if use_cache:
        cached = _read(path)
        if cached is not None:
            return cached
    from study.data.cache import build_lock
    from study.fileio import write_json

    # One process counts, others wait and read its file (the token cache's own lock).
    with build_lock(path.parent, path.stem):
        cached = _read(path) if use_cache else None
        if cached is not None:
            return cached
        result = score_baselines(data, protocol=protocol, orders=orders)
        try:
            write_json(path, result.to_dict())
        except OSError as exc:
            log.warning("cannot cache the baselines in %s: %s", path, exc)
    return result


def score_baselines(data: TokenData, *, protocol: Protocol, orders: tuple[int, ...]) -> Baselines:
    """Count each order on ``data.train`` and score it on the study's held-out windows (the
    trainer's own :func:`study.training.evaluate.heldout_set`, the byte protocol's last shorter
    window included)."""
    import numpy as np

    from analysis.fits.ngram import fit_ngram
    from study.training.evaluate import heldout_set

    held = heldout_set(
        np.asarray(data.valid),
        seq_len=protocol.seq_len,
        eval_tokens=protocol.eval_tokens,
        eval_bytes=protocol.eval_bytes,
        token_bytes=data.token_bytes,
        eot_id=data.eot_id,
    )
    parts = [w for w in (held.windows, held.tail) if w is not None and w.size]
    token_bytes = data.token_bytes.astype(np.int64)
    n_bytes = sum(int(token_bytes[w[:, 1:]].sum()) for w in parts)
    n_targets = sum(int(w[:, 1:].size) for w in parts)
    train = np.asarray(data.train)
    start = time.perf_counter()
    counts = fit_ngram(train, order=max(orders), vocab_size=data.vocab_size)
    count_seconds = time.perf_counter() - start
    scores = []
    for order in orders:
        start = time.perf_counter()
        model = counts.truncated(order)
        nll = sum(model.window_nll(w) for w in parts)
        seconds = time.perf_counter() - start
        scores.append(
            OrderScore(
                order=order,
                nll=nll / n_targets,
                ppl=math.exp(nll / n_targets),
                bpb=nll / (math.log(2) * n_bytes),
                seconds=seconds,
            )
        )
        log.info("order %d: %.4f bpb, scored in %.1fs", order, scores[-1].bpb, seconds)
    return Baselines(
        method=METHOD,
        protocol=protocol,
        corpus=data.source,
        train_tokens=int(train.size),
        targets=n_targets,
        bytes=n_bytes,
        scores=tuple(scores),
        count_seconds=count_seconds,
    )


def format_baselines(result: Baselines) -> str:
    p = result.protocol
    held = "whole held-out stories, " if p.eval_bytes is not None else ""
    lines = [
        f"{result.method} n-grams of {result.corpus} ({result.train_tokens:,} training tokens, "
        f"vocab {p.vocab_size}), scored on {result.targets:,} held-out targets "
        f"({held}seq_len {p.seq_len} windows, {result.bytes:,} bytes)",
        f"{'order':>5}  {'bpb':>7}  {'ppl':>9}  {'seconds':>7}",
    ]
    for s in result.scores:
        lines.append(f"{s.order:>5}  {s.bpb:>7.4f}  {s.ppl:>9.2f}  {s.seconds:>7.1f}")
    best = result.best()
    lines.append(
        f"best: order {best.order}, {best.bpb:.4f} bits per byte (counting took "
        f"{result.count_seconds:.1f}s when first scored)"
    )
    return "\n".join(lines)


def _cache_path(root: Path, data: TokenData, protocol: Protocol, orders: tuple[int, ...]) -> Path:
    from study.data.cache import tokenizer_sha256

    key = json.dumps(
        [
            CACHE_VERSION,
            data.fingerprint,
            tokenizer_sha256(data.tokenizer),
            data.max_stories,
            protocol.vocab_size,
            protocol.seq_len,
            protocol.eval_tokens,
            list(orders),
        ]
        # The byte protocol's key grows by its byte count; the windows' keys stay as they were,
        # so baselines cached before it are read as before and the two never share a file.
        + ([] if protocol.eval_bytes is None else [["eval_bytes", protocol.eval_bytes]])
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    folder = root / "baselines"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"ngram-{digest}.json"


def _read(path: Path) -> Baselines | None:
    try:
        raw = json.loads(path.read_bytes())
        scores = tuple(OrderScore(**s) for s in raw.pop("scores"))
        protocol = Protocol(**raw.pop("protocol"))
        return Baselines(protocol=protocol, scores=scores, **raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("baseline cache %s is unreadable (%s); scoring again", path, exc)
        return None


def _plain(value: Any) -> Any:
    """NaN (pandas' missing) as None, numpy scalars as Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def study_baseline(data: Any, *, cache_dir: Path | None = None) -> Baselines | None:
    """The baselines of a study (a :class:`analysis.load.StudyData`) on its own protocol,
    computed on demand and cached; None (the reason logged) where the study's corpus is the
    hub's (streaming it is not an analysis's job) or cannot be read here."""
    try:
        protocol = study_protocol(data.trials)
        if protocol.data is None:
            log.warning("no n-gram baseline: the study's corpus is the hub's TinyStories")
            return None
        return compute_baselines(protocol, cache_dir=cache_dir)
    except UsageError as exc:
        log.warning("no n-gram baseline for study %r: %s", data.study_name, exc)
        return None


def beats_line(result: Baselines, *, best_bpb: float, trial: int) -> str:
    """One line: whether the study's best trial beats the best n-gram, and by how much (in
    bits per byte, which both are scored in on the same windows)."""
    best = result.best()
    gap = (best.bpb - best_bpb) / best.bpb * 100
    name = f"best n-gram ({METHOD} order {best.order}, {best.bpb:.4f} bits per byte)"
    if gap > 0:
        verdict = f"beats the {name} by {gap:.1f}%"
    else:
        verdict = f"does not beat the {name}: {-gap:.1f}% worse"
    return f"best trial {trial} ({best_bpb:.4f} bits per byte) {verdict}"


def trials_beats_line(result: Baselines | None, trials: Any) -> str | None:
    """:func:`beats_line` for the trial with the lowest ``val_bpb`` among ``trials`` (a frame);
    None without a baseline or a trial that records bits per byte."""
    if result is None or "val_bpb" not in trials:
        return None
    scored = trials[trials["val_bpb"].gt(0)]
    if scored.empty:
        return None
    row = scored.loc[scored["val_bpb"].idxmin()]
    return beats_line(result, best_bpb=float(row["val_bpb"]), trial=int(row["number"]))
