"""What may be shown of a value that can carry a credential: URLs with user-info or query tokens.

Used wherever such a value reaches a log line, an error message or `check-config` output (the
configuration summary, OTLP connection lines, config error wording). Pure functions.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "redact_url", "redact_urls_in"]

REDACTED = "<secret>"

# scheme://user:password@host: anything between "//" and "@" before the first "/", "?" or "#".
_USER_INFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")


def redact_url(url: str) -> str:
    """`url` with its user-info and its query values replaced by `<secret>`.

    "https://user:pass@host/v1?token=x&a=b" -> "https://<secret>@host/v1?token=<secret>&a=<secret>".
    A query's keys stay (they help debugging); its values and any user-info may be credentials.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL urllib can split (e.g. a bad IPv6 literal): hide user-info textually
        return redact_urls_in(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        query = urlencode([(key, REDACTED) for key, _ in parse_qsl(query, keep_blank_values=True)], safe="<>")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_urls_in(text: str) -> str:
    """`text` with the user-info of every URL in it replaced by `<secret>` (free text: errors, messages)."""
    return _USER_INFO.sub(lambda match: f"{match['scheme']}{REDACTED}@", text)
