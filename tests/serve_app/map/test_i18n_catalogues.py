"""The map's message catalogues: complete, consistent, and used for every visible string.

Static checks of serve_app/static (no browser): zh-CN and en have the same keys and the
same placeholders; every key the page uses (``t("...")``, ``tEnum("group", ...)``,
``data-i18n*`` attributes) exists; and no user-visible English is hard-coded in index.html
or the JS (text nodes, ``title``/``placeholder``/``alt``/``aria-label`` attributes,
``textContent`` assignments of literals).
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest

from citysight.config import UI_LANGUAGES
from citysight.contracts import AlertKind, AlertState, Severity

STATIC = Path(__file__).resolve().parents[3] / "serve_app" / "static"
JS = sorted((STATIC / "js").glob("*.js"))
# Text that is the same in every language: the product name, the language names (each in
# its own language), and symbols.
NEUTRAL = {"citysight", "中文", "English", "☰", "×", "—"}


def _catalogue(lang: str) -> dict[str, object]:
    return json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


CATALOGUES = {lang: _catalogue(lang) for lang in UI_LANGUAGES}


def _forms(value: object) -> list[str]:
    if isinstance(value, dict):
        assert set(value) <= {"zero", "one", "two", "few", "many", "other"}, value
        assert "other" in value, value
        return [str(v) for v in value.values()]
    assert isinstance(value, str), value
    return [value]


def _placeholders(value: object) -> set[str]:
    return {p for form in _forms(value) for p in re.findall(r"\{(\w+)\}", form)}


def test_catalogues_have_the_same_keys() -> None:
    """A key in one language and not the other is a string someone forgot to translate."""
    en = set(CATALOGUES["en"])
    for lang, cat in CATALOGUES.items():
        assert set(cat) == en, (lang, sorted(set(cat) ^ en))
        for key, value in cat.items():
            assert all(f.strip() for f in _forms(value)), (lang, key)


def test_placeholders_match_across_languages() -> None:
    """A translation may reorder ``{params}`` but not invent or lose one (except title
    patterns, whose params are a menu: alert.title may show the summary or kind+camera)."""
    for key, value in CATALOGUES["en"].items():
        for lang, cat in CATALOGUES.items():
            extra = _placeholders(cat[key]) - {"summary", "kind", "camera"}
            assert extra <= _placeholders(value) | {"summary", "kind", "camera"}, (lang, key)
            if not key.startswith("alert.title"):
                assert _placeholders(cat[key]) == _placeholders(value), (lang, key)


def test_zh_cn_is_chinese() -> None:
    """The zh-CN catalogue is translated, not a copy of English."""
    han = re.compile(r"[\u4e00-\u9fff]")
    same = [k for k, v in CATALOGUES["zh-CN"].items() if v == CATALOGUES["en"][k]]
    assert same == ["topbar.viewer"], same  # "{name} · {role} · {department}" only
    words = re.compile(r"[A-Za-z]")  # a message of placeholders and punctuation only is fine
    untranslated = [
        k
        for k, v in CATALOGUES["zh-CN"].items()
        if not any(han.search(f) for f in _forms(v))
        and any(words.search(re.sub(r"\{\w+\}", "", f)) for f in _forms(v))
    ]
    assert untranslated == [], untranslated


@pytest.mark.parametrize(
    ("group", "values"),
    [
        ("kind", [k.value for k in AlertKind]),
        ("state", [s.value for s in AlertState]),
        ("severity", [s.value for s in Severity]),
        ("outcome", ["handled", "false_alarm"]),
        ("health", ["running", "stalled", "offline", "failed", "not_analysed"]),
        ("ws", ["offline", "connecting", "live", "reconnecting"]),
    ],
)
def test_every_enum_value_has_a_message(group: str, values: list[str]) -> None:
    """Alert kinds, states, severities... of the contracts all have a display name."""
    for lang, cat in CATALOGUES.items():
        missing = [v for v in values if f"{group}.{v}" not in cat]
        assert missing == [], (lang, group, missing)


def _keys_used() -> set[str]:
    used: set[str] = set()
    for path in JS:
        src = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bt\(\s*\"([\w.]+)\"", src))
        # Template keys: t(`ws.${s}`) -> every ws.* value is checked by the enum test.
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    used |= set(re.findall(r'data-i18n(?:-[a-z]+)?="([\w.]+)"', html))
    return used


def test_every_key_used_exists() -> None:
    """``t("x.y")`` and ``data-i18n="x.y"`` name keys of the catalogues."""
    used = _keys_used()
    assert len(used) > 60, used  # the scan finds the page's keys
    for lang, cat in CATALOGUES.items():
        assert sorted(used - set(cat)) == [], lang


class _TextScan(HTMLParser):
    """Finds text nodes and text attributes of index.html not covered by data-i18n."""

    VOID: ClassVar[frozenset[str]] = frozenset({"meta", "link", "input", "img", "br", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, str | None]] = []
        self.bad: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in ("title", "placeholder", "alt", "aria-label"):
            if a.get(name):
                self.bad.append(f"<{tag} {name}={a[name]!r}> (use data-i18n-{name})")
        if tag not in self.VOID:
            self.stack.append({"tag": tag, "i18n": a.get("data-i18n")})

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if not text or text in NEUTRAL or not re.search(r"[A-Za-z\u4e00-\u9fff]", text):
            return
        if self.stack and self.stack[-1]["tag"] in ("script", "style"):
            return
        if not (self.stack and self.stack[-1]["i18n"]):
            self.bad.append(repr(text))


def test_no_hard_coded_text_in_the_page() -> None:
    """Every text node and text attribute of index.html comes from the catalogue."""
    scan = _TextScan()
    scan.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    assert scan.bad == []


# A literal (or template literal) with a word in it, assigned to something a person reads.
_ASSIGN = re.compile(
    r"\.(?:textContent|innerText|title|placeholder|alt)\s*=\s*(?P<q>[\"'`])(?P<s>(?:(?!(?P=q)).)*)(?P=q)"
)
_SETATTR = re.compile(
    r"setAttribute\(\s*\"(?:title|placeholder|alt|aria-label)\"\s*,\s*\"([^\"]*)\""
)
_INNER = re.compile(r"innerHTML\s*=\s*(?P<q>[\"'`])(?P<s>(?:(?!(?P=q)).)*)(?P=q)")


def _wordy(s: str) -> bool:
    s = re.sub(r"\$\{[^}]*\}", "", s)  # template expressions are values, not text
    return bool(re.search(r"[A-Za-z]{2,}|[\u4e00-\u9fff]", s))


def test_no_hard_coded_text_in_the_scripts() -> None:
    """No UI text literal in the JS: it goes through ``t()`` (fails on the old code)."""
    bad = []
    for path in JS:
        if path.name == "i18n.js":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith(("//", "*", "/*")):
                continue
            for m in _ASSIGN.finditer(line):
                if _wordy(m.group("s")):
                    bad.append(f"{path.name}:{n}: {m.group(0)}")
            for m in _SETATTR.finditer(line):
                if _wordy(m.group(1)):
                    bad.append(f"{path.name}:{n}: {m.group(0)}")
            for m in _INNER.finditer(line):
                # Markup skeletons are fine; text between tags is not.
                text = re.sub(r"<[^>]*>", " ", m.group("s"))
                if _wordy(text):
                    bad.append(f"{path.name}:{n}: {m.group(0)}")
    assert bad == []
