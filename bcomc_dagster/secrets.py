"""Keeping secrets out of configs, records and messages: credentials live in environment variables, named
by the config (``api_key_env``); anything that looks like a credential is redacted before it is echoed."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_TOKEN = re.compile(
    r"\b(sk-[A-Za-z0-9_-]{8,}|(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,})\b"
)


def redact(text: str) -> str:
    """``text`` with URL credentials and key-like tokens replaced by ``***``."""
    return _TOKEN.sub("***", _USERINFO.sub("***@", text))


def check_url(v: str | None) -> str | None:
    """An http(s) URL without credentials in it (they would be printed and stored wherever the URL is)."""
    if v is None:
        return v
    if not v.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    if urlsplit(v).username is not None or "@" in urlsplit(v).netloc:
        raise ValueError(
            "credentials in the URL are refused (they would land in logs and records); "
            "put the key in an environment variable and name it in api_key_env"
        )
    return v


def check_env_name(v: str | None) -> str | None:
    """The name of an environment variable, never its value."""
    if v is not None and not ENV_NAME.fullmatch(v):
        raise ValueError(
            "expected the name of an environment variable (letters, digits, '_'), not a key itself"
        )
    return v
