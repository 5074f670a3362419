"""One redactor for every form a secret takes in a storage URL or a message that shows one.

Secrets hide in a URL's password (``user:password@``), in credential query keys
(``?password=``, ``passwd``, ``pwd``, ``secret``, ``token``, ``sslpassword``, ``api_key`` and the
like, any case) and in percent-encoded spellings of either (``pass%77ord=``). ``safe_url``
shows a storage URL with each of them replaced by ``***``; ``redact`` does the same to free text
(an error line that quotes a URL, a driver's message naming ``password=...``).
"""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"
# A query key is a credential if its decoded, lower-cased name holds one of these.
SECRET_WORDS = ("pass", "pwd", "secret", "token", "auth", "key", "credential")

# user:password@ after a scheme or at the start of an authority (password up to the last @
# before the host; an @ inside it would be percent-encoded).
_USERINFO = re.compile(r"(?P<head>(?:^|(?<=[/\s]))[^/?#@\s:]*:)(?P<secret>[^/?#@\s]+)(?P<tail>@)")
# The key and separator of a key=value pair in a query string or a libpq-style message
# (``password=x``, ``pwd: x``); only these are consumed, so one pair's value never hides the
# next pair's key from the scan.
_KEY = re.compile(r"(?<![A-Za-z0-9_%.\-])([A-Za-z0-9_%.\-]+)(\s*=\s*|:\s+)")
_VALUE = re.compile(r"[^&;\s'\"]*")


def is_secret_key(key: str) -> bool:
    """Whether query key ``key`` (in any spelling: percent-encoded, any case) names a secret."""
    name = urllib.parse.unquote(key).lower()
    return any(word in name for word in SECRET_WORDS)


def redact(text: str) -> str:
    """``text`` with every secret a URL or connection string in it holds replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)

    out, last = [], 0
    for m in _KEY.finditer(text):
        value = _VALUE.match(text, m.end())
        if m.start() < last or value is None or not is_secret_key(m[1]):
            continue
        if value[0] and value[0] != MASK:
            out += [text[last : m.end()], MASK]
            last = value.end()
    return "".join(out) + text[last:]


def safe_url(url: str) -> str:
    """Storage URL ``url`` as shown to a user: password and credential query values hidden
    (a URL that does not parse is shown through ``redact``)."""
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
        query = {k: (MASK if is_secret_key(k) else v) for k, v in parsed.query.items()}
        shown = parsed.set(query=query).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        return redact(url)
    # SQLAlchemy writes the mask percent-encoded in a query; show it as written.
    return redact(shown.replace(urllib.parse.quote(MASK, safe=""), MASK))
