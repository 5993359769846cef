"""anyway logs like a library: nothing reaches stderr unless the application
configured logging (a NullHandler on the "anyway" logger), and everything
reaches the application's handlers once it did."""

from __future__ import annotations

import subprocess
import sys

import pytest

GIVE_UP = """if True:
    import logging, sys, anyio, anyway

    if sys.argv[1] == "configured":
        logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

    @anyway.retry(on=OSError, attempts=2, backoff=anyway.Backoff(initial=0, jitter=None))
    async def down():
        raise OSError("down")

    async def main():
        try:
            await down()
        except OSError:
            print("handled")

    anyio.run(main)
"""


@pytest.mark.parametrize("app", ["unconfigured", "configured"])
def test_a_handled_give_up_prints_nothing_unless_logging_is_configured(app: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", GIVE_UP, app], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout == "handled\n"
    if app == "unconfigured":
        assert out.stderr == ""
    else:
        assert "anyway WARNING down: gave up after 2 attempts" in out.stderr
