"""RetryGaveUp says why retrying stopped in a machine-readable ``kind``
(what the OpenTelemetry hook labels its give-up counter with)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from anyway import Backoff, PolicyEvent, RetryBudget, RetryGaveUp, retry
from retry_support import Transient

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

FIXED = Backoff(initial=1.0, max=1.0, jitter=None)
NONE = Backoff(initial=0)


@pytest.mark.parametrize(
    ("options", "within", "kind"),
    [
        ({"attempts": 3, "backoff": NONE}, None, "attempts"),
        ({"timeout": 2.5, "backoff": FIXED}, None, "timeout"),
        ({"timeout": 60.0, "backoff": FIXED}, 2.5, "deadline"),
        ({"backoff": NONE, "budget": RetryBudget(ratio=0.01, min_per_second=0.1)}, None, "budget"),
    ],
)
async def test_give_up_kind(options: dict[str, Any], within: float | None, kind: str) -> None:
    events: list[PolicyEvent] = []

    @retry(on=Transient, hooks=events.append, **options)
    async def always_fails() -> None:
        raise Transient("down")

    with pytest.raises(Transient), anyio.fail_after(within or 3600):
        await always_fails()
    [gave_up] = [e for e in events if isinstance(e, RetryGaveUp)]
    assert gave_up.kind == kind
    assert gave_up.reason in gave_up.error.__notes__[0]  # type: ignore[union-attr]
