"""Debian's headless Chromium as every browser benchmark and test drives it (Playwright)."""

from __future__ import annotations

#: Debian's Chromium (Playwright's own browsers are never downloaded).
CHROMIUM = "/usr/bin/chromium"
#: The flags this machine's Chromium needs headless (no GPU, no network beyond the page).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
