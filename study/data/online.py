"""Can the dataset hub be reached? Found out in seconds, decided once; hub calls kept quiet.

Without a route to the hub, ``datasets`` retries for about 25 s and prints its client's warnings
(each twice) before failing. :func:`choose_corpus` asks first, with one HEAD request to the hub
endpoint bounded by PROBE_TIMEOUT_S (DNS included), and falls back to the bundled sample
(:mod:`study.data.sample`) when no answer comes. It respects what a user set: ``HF_ENDPOINT``
(a mirror), the usual proxy variables (``urllib`` reads ``HTTPS_PROXY`` / ``NO_PROXY`` as the hub
client does), ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``, and a copy of the dataset in the local
hub cache, which is then read in offline mode. :func:`quiet_hub` wraps the hub calls themselves.
"""

from __future__ import annotations

import http.client
import logging
import os
import sys
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from study.data.sample import SAMPLE

PROBE_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = ("1", "ON", "YES", "TRUE")
# The libraries under load_dataset whose loggers print retries and notices on their own handlers.
_HUB_LOGGERS = ("datasets", "huggingface_hub", "fsspec", "httpx", "httpcore", "urllib3", "filelock")


@dataclass(frozen=True)
class CorpusChoice:
    """What ``--data`` becomes: the value given, ``None`` (the hub dataset, ``offline`` when it
    is read from the local cache) or ``"sample"``; ``note`` is the one line to show, if any."""

    data: str | None
    offline: bool = False
    note: str | None = None


def choose_corpus(
    data: str | None, *, dataset: str, timeout: float = PROBE_TIMEOUT_S
) -> CorpusChoice:
    """Decide which corpus ``data`` means, within about ``timeout`` seconds.

    A given ``data`` and a ``dataset`` that is a local folder are used as they are. Otherwise the
    hub dataset is used when the hub answers; when it does not (or offline mode is set), the
    locally cached copy in offline mode if there is one, else the bundled sample. Going offline
    sets ``HF_HUB_OFFLINE`` for this process and its children, as a user would.
    """
    if data is not None or Path(dataset).expanduser().exists():
        return CorpusChoice(data)
    offline = any(os.environ.get(v, "").upper() in _TRUE for v in OFFLINE_VARS)
    if not offline and hub_reachable(timeout=timeout):
        return CorpusChoice(None)
    why = (
        "offline mode is set (HF_HUB_OFFLINE)"
        if offline
        else f"the dataset hub ({hub_endpoint()}) cannot be reached"
    )
    if hub_cached(dataset):
        go_offline()
        return CorpusChoice(
            None,
            offline=True,
            note=f"{why}: reading {dataset} from the local cache ({hub_cache()})",
        )
    return CorpusChoice(
        SAMPLE,
        note=(
            f"{why}: training on the bundled TinyStories sample (choose a corpus with --data PATH, "
            f"or --data sample to skip this check)"
        ),
    )


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` (a mirror or private hub) if set, else the public hub."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_reachable(*, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when the hub endpoint answers a HEAD request (any HTTP status) within ``timeout``
    seconds. The request runs in a daemon thread, so a slow DNS lookup cannot hold it longer.
    Over https the certificate is verified, so a transparent proxy that answers for every
    address (as on this project's machines) does not pass for the hub."""
    answered: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(hub_endpoint(), method="HEAD")
        try:
            urllib.request.urlopen(request, timeout=timeout).close()  # noqa: S310 (http(s) only)
            answered.append(True)
        except urllib.error.HTTPError:  # a status such as 403 or 503: the server is there
            answered.append(True)
        except (OSError, ValueError, http.client.HTTPException):
            answered.append(False)

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])


def hub_cache() -> Path:
    """The hub client's cache folder: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache`` by default)."""
    if folder := os.environ.get("HF_HUB_CACHE"):
        return Path(folder).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "huggingface" / "hub"


def hub_cached(dataset: str) -> bool:
    """True when the hub cache holds files of a snapshot of ``dataset`` (``owner/name``)."""
    snapshots = hub_cache() / f"datasets--{dataset.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(p.is_file() for p in snapshots.rglob("*"))


def go_offline() -> None:
    """Offline mode for the hub client in this process (its constants are read at import, so
    they are set too if it is already imported) and in the processes it starts."""
    for var in OFFLINE_VARS:
        os.environ[var] = "1"
    for module, names in (
        ("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
        ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")),
    ):
        if (loaded := sys.modules.get(module)) is not None:
            for name in names:
                setattr(loaded, name, True)


@contextmanager
def quiet_hub() -> Iterator[None]:
    """Keep the hub client's log lines, Python warnings and progress bars off the terminal while
    it works. Its failures still come out as exceptions, which the caller words as one line."""
    loggers = [logging.getLogger(name) for name in _HUB_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _no_progress_bars():
                yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """The progress bars of ``datasets`` and the hub client off, as their
    ``HF_DATASETS_DISABLE_PROGRESS_BARS`` / ``HF_HUB_DISABLE_PROGRESS_BARS`` would (a user's
    explicit ``=0`` still wins), and back as they were after."""
    switches = [
        m
        for m in (
            sys.modules.get("datasets.utils.tqdm"),
            sys.modules.get("huggingface_hub.utils.tqdm"),
        )
        if m is not None and not m.are_progress_bars_disabled()
    ]
    for module in switches:
        module.disable_progress_bars()
    try:
        yield
    finally:
        for module in switches:
            module.enable_progress_bars()
