"""The user interface: the language the map (and other pages) start in."""

from __future__ import annotations

from typing import Literal

from citysight.config.base import Strict, _f

#: Languages with a message catalogue (serve_app/static/i18n/<lang>.json, API errors).
UI_LANGUAGES: tuple[str, ...] = ("zh-CN", "en")


class UiConfig(Strict):
    """The user interface."""

    language: Literal["auto", "zh-CN", "en"] = _f(
        "Default language",
        "Language the pages start in until a user picks one with the switch (kept in the "
        "browser). auto: the browser's languages (navigator.languages), English when none "
        "is supported. Times are shown in site.timezone, labelled with its offset.",
        default="auto",
    )
