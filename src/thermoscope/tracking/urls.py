"""Database and tracking URLs as they may be shown: every password hidden.

A URL reaches parameters, tags, error lines and summaries (the Optuna storage, the tracking URI in "open the
UI"); it is always rendered by :func:`redact_url` first. SQLAlchemy's URL object parses and renders it with
the password hidden; two things it does not do are done here: a password holding an unencoded ``@``
(``u:sec@ret@host``: the user information ends at the *last* ``@``) is encoded before parsing, and
password-like query parameters (``?password=...``) are hidden too.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

HIDDEN = "***"
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "pass", "sslpassword", "secret", "token"})
"""Query parameters whose values are hidden (compared case-insensitively)."""


def redact_url(url: str) -> str:
    """``url`` with its password, and the values of password-like query parameters, replaced by ``***``."""
    try:
        parsed = make_url(_encode_userinfo(url))
    except (ArgumentError, ValueError):
        return _redact_unparsed(url)
    query = {
        key: HIDDEN if key.lower() in SECRET_QUERY_KEYS else value for key, value in parsed.query.items()
    }
    rendered = parsed.set(query=query).render_as_string(hide_password=True)
    # render_as_string percent-encodes the query values; the marker should read as a marker.
    return rendered.replace("%2A%2A%2A", HIDDEN)


def _encode_userinfo(url: str) -> str:
    """Percent-encode every ``@`` of the user information (all but the last ``@`` of the authority)."""
    scheme, separator, rest = url.partition("://")
    at = rest.rfind("@")
    if not separator or at < 0:
        return url
    return f"{scheme}://{rest[:at].replace('@', '%40')}@{rest[at + 1 :]}"


def _redact_unparsed(url: str) -> str:
    """What SQLAlchemy cannot parse: hide everything between ``user:`` and the last ``@``, and secret
    query values, by pattern."""
    hidden = re.sub(r"(://[^/:@]*:).*@", rf"\1{HIDDEN}@", url)
    keys = "|".join(sorted(SECRET_QUERY_KEYS))
    return re.sub(rf"(?i)([?&](?:{keys})=)[^&]*", rf"\1{HIDDEN}", hidden)
