"""Error bodies of the API: a stable ``code``, the English ``detail``, a localized ``message``.

Every error answer is ``{"detail": ..., "code": ..., "message": ..., "lang": ...}`` (plus
``errors`` on 422). ``detail`` is what it always was (English, specific: clients and logs
keep working); ``code`` is a machine-readable name that never changes with wording or
language; ``message`` is a sentence for a person in the language chosen from the request's
``Accept-Language`` (zh-CN or en; English when none matches), and ``lang`` says which.
"""

from __future__ import annotations

import re
from typing import Any

#: Supported languages, in the order used to break ties.
LANGUAGES: tuple[str, ...] = ("en", "zh-CN")

#: Code of each status when nothing more specific is known.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

# (status, English detail pattern, code): the specific causes of the main error classes.
_SPECIFIC: tuple[tuple[int, re.Pattern[str], str], ...] = (
    (401, re.compile(r"missing bearer token"), "missing_token"),
    (401, re.compile(r"invalid or revoked token"), "invalid_token"),
    (401, re.compile(r"monitoring needs a bearer token"), "missing_token"),
    (403, re.compile(r"missing scope: (?P<scope>.+)"), "missing_scope"),
    (409, re.compile(r"already exists"), "already_exists"),
    (503, re.compile(r"storage unavailable"), "storage_unavailable"),
    (503, re.compile(r"redaction unavailable"), "redaction_unavailable"),
)

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "bad_request": "The request is not valid: {detail}",
        "unauthorized": "Sign in first: a valid token is required.",
        "missing_token": "Sign in first: this needs a bearer token.",
        "invalid_token": "The token is invalid or has been revoked.",
        "forbidden": "You are not allowed to do this.",
        "missing_scope": "You are not allowed to do this (missing permission: {scope}).",
        "not_found": "Not found, or not in your scope.",
        "method_not_allowed": "This method is not allowed here.",
        "conflict": "This conflicts with the current state: {detail}",
        "invalid_transition": "This action is not allowed in the alert's current state.",
        "already_exists": "This already exists.",
        "payload_too_large": "The request is too large.",
        "unsupported_media_type": "This content type is not accepted.",
        "validation_error": "Some fields are invalid: {fields}",
        "rate_limited": "Too many requests: wait a moment and try again.",
        "internal_error": "Something went wrong on the server; it has been logged.",
        "unavailable": "The service is unavailable right now; try again shortly.",
        "storage_unavailable": "Storage is unavailable right now; try again shortly.",
        "redaction_unavailable": "Face blurring is unavailable, so no image can be shown now.",
        "error": "The request failed: {detail}",
    },
    "zh-CN": {
        "bad_request": "请求无效：{detail}",
        "unauthorized": "请先登录：需要有效的令牌。",
        "missing_token": "请先登录：此操作需要访问令牌。",
        "invalid_token": "令牌无效或已被吊销。",
        "forbidden": "您无权执行此操作。",
        "missing_scope": "您无权执行此操作（缺少权限：{scope}）。",
        "not_found": "未找到，或不在您的权限范围内。",
        "method_not_allowed": "此处不允许该请求方法。",
        "conflict": "与当前状态冲突：{detail}",
        "invalid_transition": "告警当前状态下不允许此操作。",
        "already_exists": "该对象已存在。",
        "payload_too_large": "请求内容过大。",
        "unsupported_media_type": "不接受此内容类型。",
        "validation_error": "以下字段无效：{fields}",
        "rate_limited": "请求过于频繁，请稍后再试。",
        "internal_error": "服务器内部错误，已记录。",
        "unavailable": "服务暂时不可用，请稍后再试。",
        "storage_unavailable": "存储暂时不可用，请稍后再试。",
        "redaction_unavailable": "人脸模糊服务不可用，暂时无法显示图像。",
        "error": "请求失败：{detail}",
    },
}

_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$|^\*$")


def negotiate(accept_language: str | None) -> str:
    """The supported language the ``Accept-Language`` header prefers (RFC 9110 q-values).

    ``zh``, ``zh-CN``, ``zh-Hans-CN`` and ``zh-TW`` all choose zh-CN (the only Chinese
    catalogue); malformed entries are ignored; no match (or no header) gives English.
    """
    if not accept_language:
        return "en"
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")[:20]):  # bounded work per request
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not _TAG.match(tag):
            continue
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, i, tag.lower()))
    for _, _, tag in sorted(ranked):
        if tag == "*":
            return "en"
        base = tag.split("-")[0]
        for lang in LANGUAGES:
            if lang.lower() == tag or lang.lower().split("-")[0] == base:
                return lang
    return "en"


def error_code(status: int, detail: Any) -> str:
    """The stable code of an error: specific when the detail names a known cause."""
    if status == 409 and isinstance(detail, dict) and "allowed" in detail:
        return "invalid_transition"  # alerts' transitions: {"message", "from", "to", "allowed"}
    text = _text(detail)
    for st, pattern, code in _SPECIFIC:
        if st == status and pattern.search(text):
            return code
    return STATUS_CODES.get(status, "error")


def _text(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        return str(detail["message"])
    return ""


def localized(code: str, lang: str, **params: str) -> str:
    """The message of ``code`` in ``lang`` (English, then the generic one, when missing)."""
    table = MESSAGES.get(lang, MESSAGES["en"])
    template = table.get(code) or MESSAGES["en"].get(code) or table["error"]
    try:
        return template.format(**params)
    except (KeyError, IndexError):
        return template


def error_body(
    status: int,
    detail: Any,
    accept_language: str | None,
    *,
    code: str | None = None,
    fields: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON body of an error answer (see the module docstring)."""
    lang = negotiate(accept_language)
    code = code or error_code(status, detail)
    text = _text(detail)
    params = {"detail": text, "fields": ", ".join(fields or []) or text, "scope": ""}
    if code == "missing_scope":
        m = re.search(r"missing scope: (.+)", text)
        params["scope"] = m.group(1) if m else ""
    return {
        "detail": detail,
        "code": code,
        "message": localized(code, lang, **params),
        "lang": lang,
    }
