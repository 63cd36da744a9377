"""Connection strings: ``<scheme>://[user[:password]@][host[:port][,host[:port]...]][/db][?opts]``.

The URL is an immutable value. Parsing never echoes the input in an error message, since the
input may hold a password; errors say what is wrong and at which character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, quote_plus, unquote

__all__ = ["URL", "URLError", "parse_url", "parse_duration", "scrub_secrets"]

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_\-.%~]+$")
_MASK = "***"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# Option names whose values are credentials: masked when rendered, never echoed in errors.
_SCRUB_LEVELS = 4  # as written, then percent-encoded up to three times (nested options)
_SECRET_OPTION_RE = re.compile(r"pass|secret|token|api_?key|credential", re.IGNORECASE)


def _mask_nested(value: str) -> str:
    """An option that is itself a connection string (``?store=mongodb://u:pw@h`` or
    ``?store=elasticsearch://h?api_key=k``) keeps its shape but loses its credentials."""
    if "://" not in value:
        return value
    try:
        return parse_url(value).render(hide_password=True)
    except ValueError:
        # Looks like a URL but does not parse: hide it whole if it may hold a credential.
        return _MASK if "@" in value or _SECRET_OPTION_RE.search(value) else value


def _is_secret_option(key: str) -> bool:
    return bool(_SECRET_OPTION_RE.search(key))


def scrub_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``, as written and percent-encoded (client
    libraries quote URLs either way; a connection string nested in an option is encoded once
    more per level)."""
    forms: set[str] = set()
    for secret in secrets:
        level = secret
        for _ in range(_SCRUB_LEVELS):
            if not level:
                break
            forms |= {level, quote(level), quote_plus(level)}
            level = quote(level, safe="")
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, _MASK)
    return text


class URLError(ValueError):
    """A connection string could not be parsed, or an option has the wrong type."""


def parse_duration(text: str) -> float:
    """Parse ``500ms``, ``30s``, ``5m``, ``12h``, ``7d``, ``2w`` or plain seconds into seconds."""
    m = _DURATION_RE.match(text)
    if not m:
        raise URLError(
            f"not a duration: {text!r}; write a number with a unit, e.g. 500ms, 30s, 5m, 12h, 7d"
        )
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


@dataclass(frozen=True)
class URL:
    """A parsed connection string. Immutable: :meth:`set` returns a modified copy."""

    scheme: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    hosts: tuple[tuple[str, int | None], ...] = ()
    database: str | None = None
    query: tuple[tuple[str, str], ...] = ()

    # -- views --------------------------------------------------------------------------------
    @property
    def host(self) -> str | None:
        """The first host, or None."""
        return self.hosts[0][0] if self.hosts else None

    @property
    def port(self) -> int | None:
        """The first host's port, or None."""
        return self.hosts[0][1] if self.hosts else None

    @property
    def base_scheme(self) -> str:
        """``mongodb`` for ``mongodb+srv``, ``elasticsearch`` for ``elasticsearch+https``."""
        return self.scheme.split("+", 1)[0]

    @property
    def options(self) -> dict[str, str]:
        """Query options; the last value wins for a repeated key."""
        return dict(self.query)

    def option_list(self, key: str) -> list[str]:
        return [v for k, v in self.query if k == key]

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in reversed(self.query):
            if k == key:
                return v
        return default

    def _shown(self, key: str, raw: str) -> str:
        return _MASK if _is_secret_option(key) else repr(raw)

    def get_int(self, key: str, default: int | None = None) -> int | None:
        raw = self.get(key)
        if raw is None:
            return default
        text = raw.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise URLError(f"option {key!r} must be an integer, got {self._shown(key, raw)}")
        return int(text)

    def get_float(self, key: str, default: float | None = None) -> float | None:
        raw = self.get(key)
        if raw is None:
            return default
        if raw.isascii():
            try:
                return float(raw)
            except ValueError:
                pass
        # Raised outside the handler so the ValueError (which quotes the value) is not chained.
        raise URLError(f"option {key!r} must be a number, got {self._shown(key, raw)}")

    def get_bool(self, key: str, default: bool | None = None) -> bool | None:
        raw = self.get(key)
        if raw is None:
            return default
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise URLError(f"option {key!r} must be true or false, got {self._shown(key, raw)}")

    def get_duration(self, key: str, default: float | None = None) -> float | None:
        """An option like ``7d``/``30s``/``500ms`` as seconds."""
        raw = self.get(key)
        if raw is None:
            return default
        try:
            return parse_duration(raw)
        except URLError as exc:
            reason = "" if _is_secret_option(key) else f": {exc}"
        raise URLError(f"option {key!r} is not a duration{reason}")

    def secrets(self) -> tuple[str, ...]:
        """The credentials this URL holds: the password, the values of options named like
        secrets (``api_key``, ``token``...) and those of connection strings nested in options.
        For scrubbing text that may quote them (see :func:`scrub_secrets`); longest first."""
        found: set[str] = set()
        if self.password:
            found.add(self.password)
        for key, value in self.query:
            if not value:
                continue
            if _is_secret_option(key):
                found.add(value)
            elif "://" in value:
                try:
                    found.update(parse_url(value).secrets())
                except ValueError:
                    if "@" in value or _SECRET_OPTION_RE.search(value):
                        found.add(value)
        return tuple(sorted(found, key=len, reverse=True))

    # -- copies -------------------------------------------------------------------------------
    def set(self, **changes: Any) -> URL:
        """A copy with fields replaced; ``query`` may be given as a mapping."""
        if "query" in changes and isinstance(changes["query"], Mapping):
            changes["query"] = tuple((str(k), str(v)) for k, v in changes["query"].items())
        return replace(self, **changes)

    def with_options(self, **options: str | None) -> URL:
        """A copy with the given options set (None removes one)."""
        kept = [(k, v) for k, v in self.query if k not in options]
        kept.extend((k, str(v)) for k, v in options.items() if v is not None)
        return replace(self, query=tuple(kept))

    def without_options(self, keys: Iterable[str]) -> URL:
        drop = set(keys)
        return replace(self, query=tuple((k, v) for k, v in self.query if k not in drop))

    # -- rendering ----------------------------------------------------------------------------
    def render(self, hide_password: bool = True) -> str:
        out = [self.scheme, "://"]
        if self.username is not None:
            out.append(quote(self.username, safe=""))
            if self.password is not None:
                out.append(":")
                out.append(_MASK if hide_password else quote(self.password, safe=""))
            out.append("@")
        hosts = []
        for host, port in self.hosts:
            h = f"[{quote(host, safe=':.')}]" if ":" in host else quote(host, safe="")
            hosts.append(h if port is None else f"{h}:{port}")
        out.append(",".join(hosts))
        if self.database is not None:
            out.append("/")
            out.append(quote(self.database, safe="/"))
        if self.query:
            out.append("?")
            out.append(
                "&".join(
                    f"{quote(k, safe='')}="
                    + (
                        _MASK
                        if hide_password and _is_secret_option(k)
                        else quote(_mask_nested(v) if hide_password else v, safe="")
                    )
                    for k, v in self.query
                )
            )
        return "".join(out)

    def __str__(self) -> str:
        return self.render(hide_password=True)

    def __repr__(self) -> str:
        return f"URL({self.render(hide_password=True)!r})"


def _fail(what: str, pos: int) -> URLError:
    return URLError(f"malformed connection string: {what} (at character {pos + 1})")


def _decode(text: str, what: str, pos: int) -> str:
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise _fail(f"bad percent-escape in {what}", pos)
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        pass
    # Raised outside the handler: the UnicodeDecodeError holds the decoded bytes (maybe a
    # password) and must not ride along as __context__.
    raise _fail(f"percent-escapes in {what} are not valid UTF-8", pos)


def _parse_hosts(text: str, offset: int) -> tuple[tuple[str, int | None], ...]:
    hosts: list[tuple[str, int | None]] = []
    if text == "":
        return ()
    pos = offset
    for part in text.split(","):
        if part == "":
            raise _fail("empty host in host list", pos)
        port: int | None = None
        if part.startswith("["):
            end = part.find("]")
            if end < 0:
                raise _fail("IPv6 address is missing its closing ']'", pos)
            host = part[1:end]
            if not host or not re.fullmatch(r"[0-9A-Fa-f:.%a-zA-Z]+", host) or ":" not in host:
                raise _fail("bad IPv6 address", pos)
            # A zone id is written %25eth0 (RFC 6874); keep it decoded, render re-encodes it.
            host = _decode(host, "IPv6 address", pos)
            rest = part[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise _fail("unexpected text after IPv6 address", pos + end + 1)
                port_text = rest[1:]
            else:
                port_text = None
        else:
            if part.count(":") > 1:
                raise _fail("IPv6 addresses must be written in brackets, like [::1]:27017", pos)
            host, sep, port_text_ = part.partition(":")
            port_text = port_text_ if sep else None
            if not host:
                raise _fail("empty host name", pos)
            if not _HOST_RE.match(host):
                raise _fail("invalid character in host name", pos)
            host = _decode(host, "host", pos)
        if port_text is not None:
            if not (port_text.isascii() and port_text.isdigit()):
                raise _fail("port must be a number", pos)
            port = int(port_text)
            if not 0 < port < 65536:
                raise _fail("port must be between 1 and 65535", pos)
        hosts.append((host, port))
        pos += len(part) + 1
    return tuple(hosts)


def parse_url(value: str | URL) -> URL:
    """Parse a connection string into a :class:`URL`. Raises :class:`URLError` if malformed."""
    if isinstance(value, URL):
        return value
    if not isinstance(value, str):
        raise URLError(f"a connection string must be a str, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise URLError("empty connection string; expected something like sqlite:///traces.db")
    sep = text.find("://")
    if sep <= 0:
        raise URLError(
            "malformed connection string: it must start with a scheme and '://' "
            "(for example mongodb://host:27017/db)"
        )
    scheme = text[:sep].lower()
    if not _SCHEME_RE.match(scheme):
        raise _fail("invalid scheme", 0)
    rest = text[sep + 3 :]
    base = sep + 3
    # Split off the query, then the path; the authority is what is left.
    rest, qmark, query_text = rest.partition("?")
    if "#" in text:
        raise _fail("fragments ('#') are not allowed; percent-encode '#' as %23", text.find("#"))
    slash = rest.find("/")
    if slash >= 0:
        authority, path = rest[:slash], rest[slash + 1 :]
        has_path = True
    else:
        authority, path, has_path = rest, "", False
    username = password = None
    at = authority.rfind("@")
    if at >= 0:
        userinfo, hostpart = authority[:at], authority[at + 1 :]
        user_raw, colon, pw_raw = userinfo.partition(":")
        username = _decode(user_raw, "user name", base)
        if colon:
            # The password is never echoed, even in part.
            try:
                password = _decode(pw_raw, "password", base)
            except URLError:
                raise _fail("bad percent-escape in password", base + len(user_raw) + 1) from None
        host_offset = base + at + 1
    else:
        hostpart, host_offset = authority, base
    hosts = _parse_hosts(hostpart, host_offset)
    database = _decode(path, "database", base + len(authority) + 1) if has_path else None
    if database == "":
        database = None
    query: list[tuple[str, str]] = []
    if qmark and query_text:
        qpos = base + len(rest) + 1
        for item in query_text.split("&"):
            if not item:
                continue
            key, eq, val = item.partition("=")
            if not key:
                raise _fail("option without a name", qpos)
            query.append((_decode(key, "option name", qpos), _decode(val, "option", qpos)))
            qpos += len(item) + 1
    return URL(
        scheme=scheme,
        username=username,
        password=password,
        hosts=hosts,
        database=database,
        query=tuple(query),
    )
