"""The dispatch lifecycle: which state transitions are allowed.

``raised → assigned(unit) → acknowledged → resolved(outcome) → feedback → closed``, plus
``false_alarm`` from any open state and reopening (``→ raised``) of finished alerts (also by
the camera re-check, actor ``camera-check``, from ``resolved`` or ``feedback``).
"""

from __future__ import annotations

from typing import Final

from citysight.contracts import AlertState

S = AlertState

ALLOWED: Final[dict[AlertState, frozenset[AlertState]]] = {
    S.RAISED: frozenset({S.ASSIGNED, S.ACKNOWLEDGED, S.FALSE_ALARM}),
    S.ASSIGNED: frozenset({S.ACKNOWLEDGED, S.FALSE_ALARM}),
    S.ACKNOWLEDGED: frozenset({S.RESOLVED, S.FALSE_ALARM}),
    S.RESOLVED: frozenset({S.FEEDBACK, S.CLOSED, S.RAISED}),
    S.FEEDBACK: frozenset({S.CLOSED, S.RAISED}),
    S.FALSE_ALARM: frozenset({S.CLOSED, S.RAISED}),
    S.CLOSED: frozenset({S.RAISED}),
}

OPEN_STATES: Final = frozenset({S.RAISED, S.ASSIGNED, S.ACKNOWLEDGED})
UNACKNOWLEDGED: Final = frozenset({S.RAISED, S.ASSIGNED})
FALSE_OUTCOMES: Final = frozenset({"false_alarm", "unfounded", "no_issue"})
"""Outcomes that count against a rule's precision."""


class InvalidTransition(ValueError):
    """A lifecycle transition that the state machine does not allow."""

    def __init__(self, from_state: AlertState, to_state: AlertState, why: str = "") -> None:
        self.from_state = from_state
        self.to_state = to_state
        allowed = ", ".join(sorted(s.value for s in ALLOWED.get(from_state, frozenset())))
        msg = why or (
            f"cannot go from {from_state.value!r} to {to_state.value!r}; "
            f"allowed from {from_state.value!r}: {allowed or 'nothing'}"
        )
        super().__init__(msg)


class AlertNotFound(KeyError):
    """No alert with this id (or it expired)."""


def check_transition(
    from_state: AlertState,
    to_state: AlertState,
    *,
    unit: str | None = None,
    outcome: str | None = None,
) -> None:
    """Raise :class:`InvalidTransition` unless ``from_state → to_state`` is allowed.

    ``assigned`` needs a ``unit``; ``resolved`` needs an ``outcome``.
    """
    if to_state not in ALLOWED.get(from_state, frozenset()):
        raise InvalidTransition(from_state, to_state)
    if to_state is S.ASSIGNED and not unit:
        raise InvalidTransition(from_state, to_state, "assigning needs a unit")
    if to_state is S.RESOLVED and not outcome:
        raise InvalidTransition(from_state, to_state, "resolving needs an outcome")
