"""Connection strings: parsing, typed options, copies, and never leaking the password."""

from __future__ import annotations

import dataclasses
import traceback

import pytest

from xprofiler.core.uri import URL, URLError, parse_duration, parse_url

SECRET = "s3cr3t-Pa55"


def _all_text(exc: BaseException) -> str:
    """Everything an operator could see of an exception: message, chain, formatted traceback."""
    parts = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(repr(cur))
        parts.append(str(cur))
        parts.extend(repr(a) for a in cur.args)
        cur = cur.__cause__ or cur.__context__
    parts.append("".join(traceback.format_exception(exc)))
    return "\n".join(parts)


# -- the grammar ------------------------------------------------------------------------------


def test_full_form_parses_every_part() -> None:
    url = parse_url(f"mongodb://alice:{SECRET}@db1.example:27017,db2.example:27018/traces?w=1")
    assert url.scheme == "mongodb"
    assert url.username == "alice"
    assert url.password == SECRET
    assert url.hosts == (("db1.example", 27017), ("db2.example", 27018))
    assert url.host == "db1.example" and url.port == 27017
    assert url.database == "traces"
    assert url.query == (("w", "1"),)


def test_minimal_forms() -> None:
    assert parse_url("memory://") == URL(scheme="memory")
    url = parse_url("redis://cache")
    assert url.hosts == (("cache", None),) and url.port is None and url.database is None
    assert parse_url("x://h/").database is None


def test_scheme_is_lowercased_and_plus_form_has_base_scheme() -> None:
    url = parse_url("MongoDB+SRV://cluster.example/db")
    assert url.scheme == "mongodb+srv"
    assert url.base_scheme == "mongodb"


def test_sqlite_three_slashes_relative_four_absolute() -> None:
    assert parse_url("sqlite:///traces.db").database == "traces.db"
    assert parse_url("sqlite:////var/lib/x/traces.db").database == "/var/lib/x/traces.db"
    assert parse_url("sqlite:///traces.db").hosts == ()


def test_percent_decoding_everywhere() -> None:
    url = parse_url("es://us%40er:p%40ss%3Aw%2Fd@h%2Dx/d%C3%A9b%20x?k%20ey=v%26al&e=%C3%A9")
    assert url.username == "us@er"
    assert url.password == "p@ss:w/d"
    assert url.host == "h-x"
    assert url.database == "déb x"
    assert url.get("k ey") == "v&al"
    assert url.get("e") == "é"


def test_unencoded_at_in_password_uses_the_last_at() -> None:
    url = parse_url("mongodb://user:pa@ss@host/db")
    assert url.password == "pa@ss" and url.host == "host"


def test_ipv6_literals_with_and_without_port() -> None:
    url = parse_url("mongodb://[::1]:27017,[2001:db8::7],h3:5/db")
    assert url.hosts == (("::1", 27017), ("2001:db8::7", None), ("h3", 5))
    assert url.host == "::1"


def test_ipv6_zone_id_is_decoded_and_rendered_back() -> None:
    url = parse_url("x://[fe80::1%25eth0]:8080")
    assert url.hosts == (("fe80::1%eth0", 8080),)
    assert str(url) == "x://[fe80::1%25eth0]:8080"
    assert parse_url(str(url)) == url


def test_render_round_trips() -> None:
    text = "mongodb://u%40x:p%3Aw@[::1]:1,h2/d%20b?a=1&b=%20x&a=2"
    url = parse_url(text)
    assert parse_url(url.render(hide_password=False)) == url
    assert url.render(hide_password=False) == text


def test_repeated_options_last_wins_and_list_keeps_all() -> None:
    url = parse_url("x://h?tag=a&tag=b&n=1")
    assert url.get("tag") == "b"
    assert url.options == {"tag": "b", "n": "1"}
    assert url.option_list("tag") == ["a", "b"]
    assert url.get("missing") is None and url.get("missing", "d") == "d"


# -- typed options ----------------------------------------------------------------------------


def test_typed_options_convert() -> None:
    url = parse_url("x://h?n=42&neg=-3&f=0.25&b1=TRUE&b2=off&b3=1&d1=500ms&d2=7d&d3=30&d4=1.5h")
    assert url.get_int("n") == 42 and url.get_int("neg") == -3
    assert url.get_float("f") == 0.25
    assert url.get_bool("b1") is True and url.get_bool("b2") is False and url.get_bool("b3")
    assert url.get_duration("d1") == pytest.approx(0.5)
    assert url.get_duration("d2") == 7 * 86400
    assert url.get_duration("d3") == 30.0
    assert url.get_duration("d4") == 5400.0
    assert url.get_int("nope", 7) == 7
    assert url.get_bool("nope", True) is True
    assert url.get_duration("nope", 2.0) == 2.0


@pytest.mark.parametrize(
    ("getter", "value", "words"),
    [
        ("get_int", "12x", "must be an integer"),
        ("get_int", "1.5", "must be an integer"),
        ("get_int", "%C2%B2", "must be an integer"),  # a superscript two is not a digit here
        ("get_float", "fast", "must be a number"),
        ("get_bool", "maybe", "must be true or false"),
        ("get_duration", "7 days", "not a duration"),
        ("get_duration", "-5s", "not a duration"),
    ],
)
def test_typed_option_errors_name_the_option_and_value(getter: str, value: str, words: str) -> None:
    url = parse_url(f"x://h?opt={value}")
    with pytest.raises(URLError) as info:
        getattr(url, getter)("opt")
    assert words in str(info.value)
    assert "'opt'" in str(info.value)


def test_parse_duration_units() -> None:
    assert parse_duration("2w") == 2 * 604800
    assert parse_duration(" 5m ") == 300
    with pytest.raises(URLError, match="500ms"):
        parse_duration("soon")


def test_secret_looking_options_are_masked_and_never_echoed() -> None:
    url = parse_url(f"es://h/db?api_key={SECRET}&timeout=5s&auth_token={SECRET}")
    assert SECRET not in str(url) and SECRET not in repr(url)
    assert "api_key=***" in str(url) and "timeout=5s" in str(url)
    assert url.get("api_key") == SECRET
    assert SECRET in url.render(hide_password=False)
    for getter in ("get_int", "get_float", "get_bool", "get_duration"):
        with pytest.raises(URLError) as info:
            getattr(url, getter)("api_key")
        assert SECRET not in _all_text(info.value)


# -- immutability and copies --------------------------------------------------------------------


def test_url_is_immutable() -> None:
    url = parse_url("x://u:p@h/db")
    with pytest.raises(dataclasses.FrozenInstanceError):
        url.password = "other"  # type: ignore[misc]
    assert hash(url) == hash(parse_url("x://u:p@h/db"))


def test_set_returns_a_changed_copy() -> None:
    url = parse_url("x://u:p@h:1/db?a=1")
    other = url.set(database="other", password="q", query={"b": 2})
    assert other.database == "other" and other.password == "q" and other.query == (("b", "2"),)
    assert url.database == "db" and url.password == "p" and url.query == (("a", "1"),)
    with pytest.raises(TypeError):
        url.set(nonsense=1)


def test_with_options_and_without_options_copy() -> None:
    url = parse_url("x://h?a=1&b=2&a=3")
    changed = url.with_options(a="9", c="x", b=None)
    assert changed.query == (("a", "9"), ("c", "x"))
    assert url.query == (("a", "1"), ("b", "2"), ("a", "3"))
    assert url.without_options(["a"]).query == (("b", "2"),)


# -- the password is never shown -------------------------------------------------------------


def test_password_masked_in_repr_and_str() -> None:
    url = parse_url(f"mongodb://admin:{SECRET}@h1,h2/db")
    for text in (str(url), repr(url), f"{url}", f"{url!r}", str([url]), str({"u": url})):
        assert SECRET not in text
        assert "admin:***@" in text


def test_password_special_characters_masked() -> None:
    url = parse_url("mongodb://admin:p%40%3A%2F@h/db")
    assert url.password == "p@:/"
    assert "p%40" not in str(url) and "p@:/" not in repr(url)


@pytest.mark.parametrize(
    "text",
    [
        f"mongodb://admin:{SECRET}@h:99999/db",  # port out of range
        f"mongodb://admin:{SECRET}@h:port/db",  # port not a number
        f"mongodb://admin:{SECRET}@h:\u00b2/db",  # a unicode digit is not a port
        f"mongodb://admin:{SECRET}%zz@h/db",  # bad escape in the password
        f"mongodb://admin:{SECRET}%ff@h/db",  # escape that is not UTF-8, in the password
        f"mongodb://admin:{SECRET}@h,,h2/db",  # empty host in list
        f"mongodb://admin:{SECRET}@h/db#frag",  # fragment
        f"mongodb://admin:{SECRET}#x@h/db",  # '#' inside the password
        f"mongodb://admin:{SECRET}@[::1/db",  # unclosed IPv6
        f"mongodb://admin:{SECRET}@::1/db",  # IPv6 without brackets
        f"mongodb://admin:{SECRET}@h o st/db",  # space in host
        f"mongodb://admin:{SECRET}@h/db?=v",  # option without a name
        f"mongodb:/admin:{SECRET}@h/db",  # no '://'
        f"1mongo://admin:{SECRET}@h/db",  # bad scheme
        f"mongodb://admin:{SECRET}@h/d%zzb",  # bad escape in the database
    ],
)
def test_malformed_string_never_echoes_the_password(text: str) -> None:
    with pytest.raises(URLError) as info:
        parse_url(text)
    assert SECRET not in _all_text(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "what", "where"),
    [
        ("mongodb://h:99999/db", "port must be between 1 and 65535", 11),
        ("mongodb://h:0", "port must be between 1 and 65535", 11),
        ("mongodb://h:abc", "port must be a number", 11),
        ("mongodb://u:p@a,,b", "empty host in host list", 17),
        ("mongodb://u:p@a,b:x", "port must be a number", 17),
        ("x://h/db#top", "fragments", 9),
        ("x://[::1", "missing its closing ']'", 5),
        ("x://[::1]x", "unexpected text after IPv6 address", 10),
        ("x://[]", "bad IPv6 address", 5),
        ("x://[nothex]", "bad IPv6 address", 5),
        ("x://::1", "IPv6 addresses must be written in brackets", 5),
        ("x://h%zz", "bad percent-escape in host", 5),
        ("x://h/a%4", "bad percent-escape in database", 7),
        ("x://h?a=1&=2", "option without a name", 11),
        ("x://h?a=%e9", "not valid UTF-8", 7),
        ("x://h!/", "invalid character in host name", 5),
        ("x y://h", "invalid scheme", 1),
    ],
)
def test_malformed_input_says_what_and_where(text: str, what: str, where: int) -> None:
    with pytest.raises(URLError) as info:
        parse_url(text)
    msg = str(info.value)
    assert what in msg
    assert f"(at character {where})" in msg


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "empty connection string"),
        ("   ", "empty connection string"),
        ("localhost:27017", "must start with a scheme"),
        ("://h", "must start with a scheme"),
        (None, "must be a str, not NoneType"),
        (b"x://h", "must be a str, not bytes"),
    ],
)
def test_not_a_connection_string(value: object, words: str) -> None:
    with pytest.raises(URLError, match=words):
        parse_url(value)  # type: ignore[arg-type]


def test_parse_url_passes_a_url_through() -> None:
    url = parse_url("x://h")
    assert parse_url(url) is url


def test_a_nested_connection_string_option_loses_its_password_in_str_and_repr() -> None:
    from xprofiler.core.uri import parse_url as _parse

    url = _parse("redis://h:6379/0?store=mongodb%3A%2F%2Fu%3Ahunter2%40db%3A27017%2Fx&stream=s")
    assert url.get("store") == "mongodb://u:hunter2@db:27017/x"  # the value itself is intact
    for text in (str(url), repr(url)):
        assert "hunter2" not in text
        assert "db%3A27017" in text  # the shape stays readable
    garbled = _parse("redis://h/0?store=mongodb%3A%2F%2Fu%3Ahunter2%40db%3Anotaport")
    assert "hunter2" not in str(garbled)
