"""The console's pure parts: tokens, roles, proxy headers, CSRF, cursors, settings, windows,
list requests, throughput sums and the live snapshots' coalescing (no I/O)."""

from __future__ import annotations

import asyncio
import math

import pytest

from runnerq.console import ConsoleSettings, Role
from runnerq.console.auth import Authenticator, TokenTable, hash_token, parse_group_roles
from runnerq.console.csrf import CSRF_COOKIE, CSRF_HEADER, csrf_ok
from runnerq.console.cursors import BadCursor, decode_cursor, encode_cursor
from runnerq.console.lists import ListRequest, record_summary, worker_of_token
from runnerq.console.pages import Window
from runnerq.console.settings import is_loopback
from runnerq.console.sse import Snapshots
from runnerq.console.telemetry import read_throughput
from runnerq.errors import ConfigurationError


def test_tokens_file_holds_hashes_only() -> None:
    text = f"# comment\n\n{hash_token('s3cret')} operator ci bot\n{hash_token('x')} ADMIN root\n"
    table = TokenTable.parse(text)
    assert len(table) == 2
    assert table.lookup("s3cret") == (Role.OPERATOR, "ci bot")
    assert table.lookup("x") == (Role.ADMIN, "root")
    assert table.lookup("nope") is None


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("sha256:abc viewer me", "64 hex"),
        ("md5:" + "0" * 64 + " viewer me", "sha256"),
        ("sha256:" + "g" * 64 + " viewer me", "64 hex"),
        ("sha256:" + "0" * 64 + " boss me", "unknown role"),
        ("sha256:" + "0" * 64 + " viewer", "expected"),
    ],
)
def test_bad_tokens_file_lines_are_refused_with_their_line(line: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as caught:
        TokenTable.parse(f"# first\n{line}\n")
    assert "line 2" in str(caught.value)


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR) and not Role.OPERATOR.allows(Role.ADMIN)
    assert parse_group_roles(["a=admin", "team=x=viewer"]) == {
        "a": Role.ADMIN,
        "team=x": Role.VIEWER,
    }
    with pytest.raises(ConfigurationError):
        parse_group_roles(["noequals"])


def test_authenticator_sources_and_caps() -> None:
    tokens = TokenTable.parse(f"{hash_token('t')} admin alice\n")
    auth = Authenticator(tokens, ["10.0.0.0/8"], {"ops": Role.OPERATOR}, None, False, False)
    assert auth.identify("1.2.3.4", {"Authorization": "Bearer t"}).role is Role.ADMIN  # type: ignore[union-attr]
    assert auth.identify("1.2.3.4", {"Authorization": "Bearer wrong"}) is None
    proxied = {"X-Forwarded-User": "bob", "X-Forwarded-Groups": "dev, ops"}
    who = auth.identify("10.1.2.3", proxied)
    assert who is not None and (who.name, who.role, who.via) == ("bob", Role.OPERATOR, "proxy")
    assert auth.identify("192.168.0.1", proxied) is None  # not from the proxy
    assert auth.identify("10.1.2.3", {"X-Forwarded-User": "eve"}) is None  # no default role
    assert auth.identify("not-an-ip", proxied) is None
    read_only = Authenticator(tokens, [], {}, Role.VIEWER, True, False)
    assert read_only.identify(None, {"Authorization": "Bearer t"}).role is Role.VIEWER  # type: ignore[union-attr]
    open_ = Authenticator(None, [], {}, None, False, True)
    assert open_.identify(None, {}).role is Role.ADMIN  # type: ignore[union-attr]


def test_csrf_double_submit() -> None:
    token = "a" * 40
    cookies, headers = {CSRF_COOKIE: token}, {CSRF_HEADER: token}
    assert csrf_ok("GET", {}, {})
    assert csrf_ok("POST", cookies, headers)
    assert not csrf_ok("POST", cookies, {})
    assert not csrf_ok("POST", {}, headers)
    assert not csrf_ok("DELETE", cookies, {CSRF_HEADER: "b" * 40})
    assert not csrf_ok("POST", {CSRF_COOKIE: "short"}, {CSRF_HEADER: "short"})


def test_cursors_round_trip_and_refuse_the_rest() -> None:
    cursor = encode_cursor("ready:*", i="abc", s=12.0)
    assert decode_cursor(cursor, "ready:*") == {"k": "ready:*", "i": "abc", "s": 12.0}
    for bad in ("", "!!!", "x" * 3000, encode_cursor("dead:*", i="a", s=1)):
        with pytest.raises(BadCursor):
            decode_cursor(bad, "ready:*")


def test_settings_refuse_no_auth_off_loopback_and_no_way_in() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    ConsoleSettings(no_auth=True)
    with pytest.raises(ConfigurationError, match="loopback"):
        ConsoleSettings(no_auth=True, host="0.0.0.0")
    with pytest.raises(ConfigurationError, match="needs a way"):
        ConsoleSettings()
    with pytest.raises(ConfigurationError, match="CIDR"):
        ConsoleSettings(trusted_proxies=("nonsense",))
    with pytest.raises(ConfigurationError):
        ConsoleSettings(no_auth=True, queues=("bad{name}",))


def test_windows_and_list_requests() -> None:
    whole = Window()
    assert (whole.low_arg(), whole.high_arg()) == ("-inf", "+inf")
    part = Window(10.0, 20.0)
    assert (part.low_arg(), part.high_arg(), part.high_arg(15.0)) == ("10", "(20", "15")
    assert part.holds(10.0) and not part.holds(20.0)
    assert Window(-math.inf, 1.5).high_arg() == "(1.5"
    request = ListRequest.from_query("ready", "high", None, "10")
    assert request.kind == "ready:high" and request.window() == Window(2.0**48, 2.0**49)
    for args in [
        ("nope", None, None, None),
        ("dead", "high", None, None),
        ("ready", None, None, "0"),
    ]:
        with pytest.raises(ValueError, match=r"."):
            ListRequest.from_query(*args)


def test_record_summaries_and_tokens() -> None:
    assert record_summary(None) == {"record": "missing"}
    assert record_summary("{bad") == {"record": "corrupt"}
    assert record_summary('{"type": "t", "retry_count": 2}')["attempts"] == 2
    assert worker_of_token("host:12:abcd:~17") == "host:12:abcd"
    assert worker_of_token(None) is None


def test_throughput_sums_the_last_hour_and_day() -> None:
    now = 1_000 * 60_000
    fields = {"1000:c": "3", "1000:f": "1", "941:c": "2", "940:c": "5", "-1:c": "9", "x:c": "1"}
    fields["1001:c"] = "100"  # a later minute (another clock): not counted
    found = read_throughput(fields, now)
    assert found is not None
    assert found.as_dict() == {
        "completed_hour": 5,
        "failed_hour": 1,
        "completed_day": 10,
        "failed_day": 1,
    }
    assert read_throughput({}, now) is None


async def test_snapshots_share_one_read_per_interval() -> None:
    snapshots = Snapshots(interval=60.0)
    calls = 0

    async def read() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    results = await asyncio.gather(*(snapshots.get("k", read) for _ in range(20)))
    assert results == [1] * 20 and calls == 1
    assert await snapshots.get("other", read) == 2
