"""URL policy: allowed schemes, FFmpeg protocol tricks, SSRF hosts, redaction."""

from __future__ import annotations

import pytest

from citysight.urls import check_url, ffmpeg_options, redact_url, with_password


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
    assert redact_url(url) == expected


def test_with_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PW", "p@ss:w/rd")
    url = with_password("rtsp://admin@10.0.0.5:554/s", "CAM_PW")
    assert url == "rtsp://admin:p%40ss%3Aw%2Frd@10.0.0.5:554/s"
    assert "p%40ss" not in redact_url(url)
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
