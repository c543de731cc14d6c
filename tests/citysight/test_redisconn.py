"""Redis clients through Sentinel (citysight.redisconn, services.redis.sentinels)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
import redis
from redisha import sentinel_pair

from citysight import redisconn
from citysight.config import CitysightConfig, ConfigError, parse_config
from citysight.urls import redact


@pytest.mark.parametrize(
    ("kwargs", "url"),
    [
        ({"sentinels": ["10.0.0.31:26379"], "master": "citysight"},
         "redis+sentinel://10.0.0.31:26379/citysight/0"),
        ({"sentinels": ["a:1", "b:2"], "master": "m", "db": 3},
         "redis+sentinel://a:1,b:2/m/3"),
        ({"sentinels": ["a:1"], "master": "m", "password": "p@ss/w"},
         "redis+sentinel://:p%40ss%2Fw@a:1/m/0"),
    ],
)  # fmt: skip
def test_sentinel_url_round_trip(kwargs: dict, url: str) -> None:
    assert redisconn.sentinel_url(**kwargs) == url
    t = redisconn.parse_sentinel_url(url)
    assert [f"{h}:{p}" for h, p in t.sentinels] == kwargs["sentinels"]
    assert (t.master, t.db, t.password) == (
        kwargs["master"], kwargs.get("db", 0), kwargs.get("password")
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://a:1/0", "not a redis+sentinel:// URL"),
        ("redis+sentinel:///m/0", "names no Sentinel"),
        ("redis+sentinel://a/m/0", "is not host:port"),
        ("redis+sentinel://a:99999/m/0", "is not host:port"),
        ("redis+sentinel://a:1/", "names no master"),
        ("redis+sentinel://a:1/m/x", "is not a number"),
    ],
)
def test_bad_sentinel_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        redisconn.parse_sentinel_url(url)


def test_a_sentinel_url_is_redacted() -> None:
    url = redisconn.sentinel_url(["a:1", "b:2"], "m", password="secret")
    assert "secret" not in redact(url)


@pytest.mark.parametrize(
    ("redis_cfg", "problem"),
    [
        ({"sentinels": ["nohost"]}, "services.redis.sentinels"),
        ({"sentinels": ["a:1"], "url": "redis://a:1/0"}, "url or sentinels, not both"),
        ({"alert_replicas": -1}, "services.redis.alert_replicas"),
    ],
)
def test_bad_redis_sections_are_config_errors(redis_cfg: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"services": {"redis": redis_cfg}})
    assert problem in str(err.value)


def test_connection_url_with_sentinels_carries_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CS_TEST_REDIS_PW", "pw")
    cfg = CitysightConfig.model_validate(
        {"services": {"redis": {"sentinels": ["10.1.1.1:26379", "10.1.1.2:26379"],
                                "password_env": "CS_TEST_REDIS_PW"}}}
    )  # fmt: skip
    url = cfg.services.redis.connection_url()
    assert url == "redis+sentinel://:pw@10.1.1.1:26379,10.1.1.2:26379/citysight/0"
    monkeypatch.delenv("CS_TEST_REDIS_PW")
    with pytest.raises(ValueError, match="CS_TEST_REDIS_PW"):
        cfg.services.redis.connection_url()


def test_clients_follow_a_failover(tmp_path: Path) -> None:
    """A client of the Sentinel URL writes to the primary, and, after the primary crashed,
    to the replica the Sentinel promoted (sync and asyncio clients)."""
    with sentinel_pair(tmp_path) as (primary, replica, sentinel):
        assert replica is not None
        url = redisconn.sentinel_url([sentinel.address], "citysight")
        r = redisconn.connect(url, socket_timeout=1)
        r.set("k", "before")
        assert primary.client().get("k") == b"before"
        primary.kill()
        deadline = time.monotonic() + 20
        n = 0
        while True:
            n += 1  # a fresh value each time: the replica also holds what it replicated
            try:
                r.set("k", f"after-{n}")
                promoted = replica.client().info("replication")["role"] == "master"
                if promoted and replica.client().get("k") == f"after-{n}".encode():
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "writes did not follow the failover"
            time.sleep(0.05)

        async def async_write() -> None:
            ar = redisconn.connect_async(url)
            try:
                await ar.set("k2", "async")
            finally:
                await ar.aclose()

        asyncio.run(async_write())
        assert replica.client().get("k2") == b"async"


def test_unknown_master_is_a_clear_error(tmp_path: Path) -> None:
    with sentinel_pair(tmp_path, replica=False) as (_, _, sentinel):
        r = redisconn.connect(redisconn.sentinel_url([sentinel.address], "nope"))
        with pytest.raises(redis.sentinel.MasterNotFoundError, match="nope"):
            r.ping()
