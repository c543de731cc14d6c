"""URL policy: allowed schemes, FFmpeg protocol tricks, SSRF hosts, redaction."""

from __future__ import annotations

import pytest

from citysight.urls import check_url, ffmpeg_options, redact, with_password


@pytest.mark.parametrize(
    ("url", "allowed", "error"),
    [
        ("rtsp://10.0.0.5:554/stream1", None, None),
        ("rtsps://cam.example.org/live", None, None),
        ("RTSP://cam.example.org/live", None, None),
        ("rtsp://user@[2001:db8::1]:554/s", None, None),
        ("https://cam.example.org/live.m3u8", ["rtsp", "https"], None),
        ("http://cam.example.org/mjpeg", None, "not allowed"),
        ("file:///etc/passwd", None, "never allowed"),
        ("file:/etc/passwd", ["file"], "never allowed"),
        ("concat:/a.ts|/b.ts", None, "never allowed"),
        ("hls+file:///tmp/x.m3u8", None, "never allowed"),
        ("subfile,,start,0,end,0,,:/etc/passwd", None, "no scheme"),
        ("subfile:/etc/passwd", None, "never allowed"),
        ("data:video/mp4;base64,AAAA", None, "never allowed"),
        ("pipe:0", None, "never allowed"),
        ("crypto+rtsp://cam/x", ["crypto+rtsp"], "never allowed"),
        ("/var/videos/x.mp4", None, "no scheme"),
        ("rtsp://169.254.169.254/latest/meta-data", None, "link-local"),
        ("rtsp://169.254.1.7/s", None, "link-local"),
        ("rtsp://[fe80::1]/s", None, "link-local"),
        ("rtsp://[::ffff:169.254.169.254]/s", None, "link-local"),
        ("rtsp://metadata.google.internal/computeMetadata", None, "metadata"),
        ("rtsp://METADATA.GOOGLE.INTERNAL./x", None, "metadata"),
        ("rtsp:///nohost", None, "no host"),
        ("rtsp://cam/x\r\nInjected: 1", None, "whitespace"),
        ("rtsp://cam:99999/x", None, "malformed"),
        ("rtsp://0.0.0.0/x", None, "unicast"),
    ],
)
def test_check_url(url: str, allowed: list[str] | None, error: str | None) -> None:
    kwargs = {"allowed_schemes": allowed} if allowed else {}
    if error is None:
        assert check_url(url, **kwargs) == url
    else:
        with pytest.raises(ValueError, match=error):
            check_url(url, **kwargs)


def test_error_message_never_contains_password() -> None:
    with pytest.raises(ValueError) as exc:
        check_url("rtsp://admin:s3cret@169.254.169.254/x")
    assert "s3cret" not in str(exc.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/s?x=1", "rtsp://admin:***@10.0.0.5:554/s?x=1"),
        ("rtsp://10.0.0.5/s", "rtsp://10.0.0.5/s"),
        ("rtsp://:pw@[2001:db8::1]/s", "rtsp://:***@[2001:db8::1]/s"),
        ("/videos/a.mp4", "/videos/a.mp4"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact(url) == expected


# The one scrubber, for URLs and for messages that quote them (PyAV's exception texts carry
# the URL it opened, password included: "[Errno 111] Connection refused: 'rtsp://...'").
@pytest.mark.parametrize(
    ("text", "logged", "api"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/s", "rtsp://admin:***@10.0.0.5:554/s",
         "rtsp://10.0.0.5:554/s"),
        ("rtsp://admin@10.0.0.5/s", "rtsp://admin@10.0.0.5/s", "rtsp://10.0.0.5/s"),
        ("rtsp://10.0.0.5/s@x", "rtsp://10.0.0.5/s@x", "rtsp://10.0.0.5/s@x"),
        ("rtsp://u:p@ss@h/x", "rtsp://u:***@h/x", "rtsp://h/x"),
        ("rtsp://u:p%40ss@h/x", "rtsp://u:***@h/x", "rtsp://h/x"),
        ("redis://:pw@redis:6379/0", "redis://:***@redis:6379/0", "redis://redis:6379/0"),
        ("[Errno 111] Connection refused: 'rtsp://admin:s3cret@127.0.0.1:1/none'",
         "[Errno 111] Connection refused: 'rtsp://admin:***@127.0.0.1:1/none'",
         "[Errno 111] Connection refused: 'rtsp://127.0.0.1:1/none'"),
        ("a rtsp://a:1@h/x and http://b:2@g/y", "a rtsp://a:***@h/x and http://b:***@g/y",
         "a rtsp://h/x and http://g/y"),
        ("/videos/a@b.mp4", "/videos/a@b.mp4", "/videos/a@b.mp4"),
        ("file:///videos/a@b.mp4", "file:///videos/a@b.mp4", "file:///videos/a@b.mp4"),
        ("no url here", "no url here", "no url here"),
    ],
)  # fmt: skip
def test_redact_scrubs_urls_and_messages(text: str, logged: str, api: str) -> None:
    assert redact(text) == logged
    assert redact(text, keep_user=False) == api


def test_with_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PW", "p@ss:w/rd")
    url = with_password("rtsp://admin@10.0.0.5:554/s", "CAM_PW")
    assert url == "rtsp://admin:p%40ss%3Aw%2Frd@10.0.0.5:554/s"
    assert "p%40ss" not in redact(url)
    monkeypatch.delenv("CAM_PW")
    with pytest.raises(ValueError, match="CAM_PW"):
        with_password("rtsp://admin@10.0.0.5/s", "CAM_PW")


@pytest.mark.parametrize(
    ("url", "transport", "expected"),
    [
        ("rtsp://cam/s", "tcp", {"rtsp_transport": "tcp", "timeout": "2500000"}),
        ("rtsp://cam/s", "udp", {"rtsp_transport": "udp", "rw_timeout": "2500000"}),
        (
            "https://cam/s",
            "tcp",
            {"rw_timeout": "2500000", "protocol_whitelist": "http,https,tcp,tls"},
        ),
        ("/videos/a.mp4", "tcp", {"protocol_whitelist": "file"}),
    ],
)
def test_ffmpeg_options(url: str, transport: str, expected: dict[str, str]) -> None:
    opts = ffmpeg_options(url, transport=transport, timeout_s=2.5)
    assert expected.items() <= opts.items()
    assert "file" not in opts["protocol_whitelist"].split(",") or url.startswith("/")
