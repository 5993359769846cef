"""Re-run the AWS Architecture Blog's "Exponential Backoff And Jitter" (2015)
experiment in virtual time, with anyway's own retry and Backoff.

N clients start at the same instant and each wants to update one row guarded
by optimistic concurrency control (OCC): read the row's version, then write
it back conditionally on that version. Every message crosses a network whose
delay is ``|normal(10 ms, 2 ms)|``, as in the post's simulator. A write whose
version is stale (another client wrote in between) fails with a conflict,
and the client retries the read-write cycle with ``anyway.retry`` after the
backoff. We count the writes the row receives (the work) and the virtual
time until the last client has succeeded, for each way of waiting:

* ``none``: capped exponential backoff without jitter;
* ``full``, ``equal``, ``decorrelated``: the post's three jitters;

all with the post's base of 5 ms and cap of 2 s. Everything runs on
``anyway.testing``'s virtual clock, so a simulated minute takes milliseconds
and the numbers are exactly reproducible (fixed seed)::

    python benchmarks/jitter_experiment.py                  # table
    python benchmarks/jitter_experiment.py --plot jitter.png  # and a plot
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

import anyway
from anyway import Backoff
from anyway.testing import virtual_time_options

STRATEGIES: tuple[str, ...] = ("none", "full", "equal", "decorrelated")
LABELS = {
    "none": "exponential, no jitter",
    "full": "full jitter",
    "equal": "equal jitter",
    "decorrelated": "decorrelated jitter",
}
BASE = 0.005  # the post's base: 5 ms
CAP = 2.0  # and its cap: 2 s
NET_MEAN = 0.010
NET_SD = 0.002
DEFAULT_CLIENTS = (5, 10, 20, 30, 40, 50, 60, 80, 100)


class Conflict(Exception):
    """The conditional write saw a newer version: someone else wrote first."""


@dataclass(slots=True)
class Row:
    """The contended row: its version and the writes it has received."""

    version: int = 0
    writes: int = 0


@dataclass(slots=True)
class Outcome:
    clients: int
    strategy: str
    calls: float  # mean writes per run
    seconds: float  # mean completion time per run


async def simulate(clients: int, strategy: str, seed: str) -> tuple[int, float]:
    """One run: *clients* clients update the row; returns (writes, seconds)."""
    net_random = random.Random(f"net-{seed}")
    jitter = None if strategy == "none" else strategy
    backoff = Backoff(
        initial=BASE,
        max=CAP,
        multiplier=2.0,
        jitter=jitter,  # type: ignore[arg-type]
        random=random.Random(f"jitter-{seed}"),
    )
    policy = anyway.retry(on=Conflict, attempts=None, timeout=None, backoff=backoff, name="occ")
    row = Row()

    def net() -> float:
        return abs(net_random.normalvariate(NET_MEAN, NET_SD))

    async def update() -> None:
        await anyio.sleep(net())  # the read request travels to the server
        seen = row.version
        await anyio.sleep(net())  # the version travels back
        await anyio.sleep(net())  # the conditional write travels to the server
        row.writes += 1
        stale = row.version != seen
        if not stale:
            row.version += 1
        await anyio.sleep(net())  # the answer travels back
        if stale:
            raise Conflict

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(policy.call, update)
    assert row.version == clients  # every client succeeded exactly once
    return row.writes, anyio.current_time() - start


async def experiment(
    clients: Sequence[int], trials: int, seed: int
) -> dict[tuple[int, str], Outcome]:
    results: dict[tuple[int, str], Outcome] = {}
    for n in clients:
        for strategy in STRATEGIES:
            runs = [
                await simulate(n, strategy, f"{seed}-{n}-{strategy}-{t}") for t in range(trials)
            ]
            results[n, strategy] = Outcome(
                clients=n,
                strategy=strategy,
                calls=statistics.fmean(w for w, _ in runs),
                seconds=statistics.fmean(s for _, s in runs),
            )
    return results


def format_table(results: dict[tuple[int, str], Outcome], clients: Sequence[int]) -> str:
    head = f"{'clients':>7} | " + " ".join(f"{s:>12}" for s in STRATEGIES)
    lines = ["total calls (writes, mean per run)", head, "-" * len(head)]
    lines += [
        f"{n:>7} | " + " ".join(f"{results[n, s].calls:>12.1f}" for s in STRATEGIES)
        for n in clients
    ]
    lines += ["", "completion time (ms of virtual time, mean per run)", head, "-" * len(head)]
    lines += [
        f"{n:>7} | " + " ".join(f"{results[n, s].seconds * 1000:>12.0f}" for s in STRATEGIES)
        for n in clients
    ]
    return "\n".join(lines)


def plot(results: dict[tuple[int, str], Outcome], clients: Sequence[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (work, duration) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    styles = {"none": "o-", "full": "s-", "equal": "^-", "decorrelated": "d-"}
    for strategy in STRATEGIES:
        work.plot(
            clients,
            [results[n, strategy].calls for n in clients],
            styles[strategy],
            label=LABELS[strategy],
            markersize=4,
        )
        duration.plot(
            clients,
            [results[n, strategy].seconds * 1000 for n in clients],
            styles[strategy],
            label=LABELS[strategy],
            markersize=4,
        )
    work.set(title="Work: total calls", xlabel="contending clients", ylabel="writes (mean)")
    duration.set(
        title="Completion time (log scale)",
        xlabel="contending clients",
        ylabel="virtual ms (mean)",
        yscale="log",
    )
    for axes in (work, duration):
        axes.grid(alpha=0.3)
        axes.legend()
    fig.suptitle("OCC contention with anyway.retry: backoff without and with jitter")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=list(DEFAULT_CLIENTS),
        help="numbers of contending clients (default: 5 to 100)",
    )
    parser.add_argument("--trials", type=int, default=10, help="runs per point (default 10)")
    parser.add_argument("--seed", type=int, default=2015, help="random seed (default 2015)")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH", help="write a PNG")
    args = parser.parse_args(argv)
    if args.trials < 1 or any(n < 1 for n in args.clients):
        parser.error("--trials and --clients must be >= 1")

    wall = time.perf_counter()
    results = anyio.run(
        experiment,
        args.clients,
        args.trials,
        args.seed,
        backend=args.backend,
        backend_options=virtual_time_options(args.backend),
    )
    wall = time.perf_counter() - wall
    print(format_table(results, args.clients))
    print(
        f"\n{args.trials} runs per point, seed {args.seed}, {args.backend} on virtual time;"
        f" base {BASE * 1000:g} ms, cap {CAP:g} s, network |N({NET_MEAN * 1000:g} ms,"
        f" {NET_SD * 1000:g} ms)|; {wall:.1f} s of wall time"
    )
    if args.plot is not None:
        plot(results, args.clients, args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
