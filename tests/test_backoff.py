"""anyway.Backoff: the AWS post's jitters, exactly; validation; statistics."""

from __future__ import annotations

import importlib
import math
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from anyway import Backoff

SAMPLES = 10_000


def ks_statistic(samples: Sequence[float], cdf: Callable[[float], float]) -> float:
    """Kolmogorov-Smirnov distance between *samples* and a continuous *cdf*."""
    ordered = sorted(samples)
    n = len(ordered)
    return max(max((i + 1) / n - cdf(x), cdf(x) - i / n) for i, x in enumerate(ordered))


def uniform_cdf(low: float, high: float) -> Callable[[float], float]:
    return lambda x: min(1.0, max(0.0, (x - low) / (high - low)))


# The 1 % critical value of the KS statistic for n samples is 1.63 / sqrt(n).
KS_CRITICAL = 1.63 / math.sqrt(SAMPLES)


# --- validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"initial": -0.1}, ValueError, r"initial must be >= 0, got -0.1; the first wait"),
        ({"initial": math.nan}, ValueError, r"initial must be a number, got NaN"),
        ({"initial": math.inf}, ValueError, r"initial must be finite"),
        ({"initial": True}, TypeError, r"initial must be a number, got True \(bool\)"),
        ({"initial": "1"}, TypeError, r"initial must be a number, got '1' \(str\)"),
        ({"max": math.inf}, ValueError, r"max must be finite.*unbounded wait"),
        ({"max": -1}, ValueError, r"max must be >= 0, got -1"),
        (
            {"multiplier": 0.5},
            ValueError,
            r"multiplier must be >= 1, got 0.5; waits must not shrink",
        ),
        ({"multiplier": math.nan}, ValueError, r"multiplier must be a number, got NaN"),
        (
            {"jitter": "fulll"},
            ValueError,
            r"jitter must be 'full', 'equal', 'decorrelated' or None, got 'fulll'",
        ),
        ({"jitter": True}, TypeError, r"jitter must be .* got True \(bool\)"),
        ({"jitter": 1}, TypeError, r"jitter must be .* got 1 \(int\)"),
        ({"random": 42}, TypeError, r"random must be a random.Random instance .* got 42"),
        ({"random": random.Random}, TypeError, r"random must be a random.Random instance"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Backoff(0.1)  # type: ignore[misc]


def test_repr_properties_and_immutability() -> None:
    backoff = Backoff(initial=0.5, max=30, multiplier=3, jitter="equal")
    assert repr(backoff) == "Backoff(initial=0.5, max=30, multiplier=3, jitter='equal')"
    assert repr(Backoff()) == "Backoff(initial=0.1, max=10, multiplier=2, jitter='full')"
    rng = random.Random(1)
    assert repr(Backoff(jitter=None, random=rng)).endswith(f"jitter=None, random={rng!r})")
    assert (backoff.initial, backoff.max, backoff.multiplier, backoff.jitter) == (
        0.5,
        30.0,
        3.0,
        "equal",
    )
    with pytest.raises(AttributeError, match="immutable"):
        backoff.initial = 1.0  # type: ignore[misc]
    assert not hasattr(backoff, "__dict__")
    assert Backoff(initial=0.5) == Backoff(initial=0.5)
    assert hash(Backoff(initial=0.5)) == hash(Backoff(initial=0.5))
    assert Backoff(initial=0.5) != Backoff(initial=0.6)
    assert Backoff(random=rng) != Backoff(random=random.Random(1))
    assert Backoff() != "Backoff()"


def test_zero_waits_are_allowed() -> None:
    assert list(islice(Backoff(initial=0, max=0).delays(), 3)) == [0.0, 0.0, 0.0]


# --- exact sequences -------------------------------------------------------------


def test_no_jitter_is_the_capped_exponential() -> None:
    backoff = Backoff(initial=0.1, max=1.0, multiplier=2, jitter=None)
    assert list(islice(backoff.delays(), 7)) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1, 1, 1])
    assert [backoff.delay(n) for n in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    assert [backoff.ceiling(n) for n in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])


def test_multiplier_one_is_constant() -> None:
    backoff = Backoff(initial=2, max=10, multiplier=1, jitter=None)
    assert list(islice(backoff.delays(), 4)) == [2.0, 2.0, 2.0, 2.0]


def test_huge_exponents_do_not_overflow() -> None:
    backoff = Backoff(initial=1, max=5, multiplier=10, jitter="full", random=random.Random(0))
    assert backoff.ceiling(10_000) == 5.0
    assert 0 <= backoff.delay(10_000) <= 5
    assert all(0 <= d <= 5 for d in islice(backoff.delays(), 5000))
    with pytest.raises(ValueError, match="n must be >= 0"):
        backoff.ceiling(-1)


def test_the_formulas_of_the_post() -> None:
    """Each jitter draws exactly what the post's formula says, from the given source."""
    temp = 0.8  # min(cap, base * 2 ** 3) with base 0.1, cap 10

    def draws(jitter: str) -> float:
        return Backoff(initial=0.1, max=10, jitter=jitter, random=random.Random(7)).delay(3)  # type: ignore[arg-type]

    rng = random.Random(7)
    assert draws("full") == rng.uniform(0, temp)
    rng = random.Random(7)
    assert draws("equal") == temp / 2 + rng.uniform(0, temp / 2)
    rng = random.Random(7)
    previous = 0.3
    assert Backoff(initial=0.1, max=10, jitter="decorrelated", random=random.Random(7)).delay(
        3, previous=previous
    ) == min(10, rng.uniform(0.1, previous * 3))


def test_decorrelated_sequence_follows_the_post() -> None:
    rng = random.Random(3)
    expected = []
    sleep = 0.1
    for _ in range(30):
        sleep = min(2.0, rng.uniform(0.1, sleep * 3))
        expected.append(sleep)
    backoff = Backoff(initial=0.1, max=2.0, jitter="decorrelated", random=random.Random(3))
    assert list(islice(backoff.delays(), 30)) == expected


def test_seeded_backoffs_are_reproducible() -> None:
    for jitter in ("full", "equal", "decorrelated"):
        one = list(islice(Backoff(jitter=jitter, random=random.Random(42)).delays(), 20))  # type: ignore[arg-type]
        two = list(islice(Backoff(jitter=jitter, random=random.Random(42)).delays(), 20))  # type: ignore[arg-type]
        assert one == two
        assert len(set(one)) == 20


def test_decorrelated_state_is_per_iterator() -> None:
    """Two calls sharing one Backoff each start their own walk at ``initial``."""
    backoff = Backoff(initial=1, max=1000, jitter="decorrelated", random=random.Random(5))
    first = backoff.delays()
    walked = list(islice(first, 8))  # grows well past 3 * initial
    assert max(walked) > 3
    second = backoff.delays()
    assert 1 <= next(second) <= 3  # a fresh walk, not the first one's state
    assert 1 <= next(first) <= 3 * walked[-1]


def test_default_random_source_is_the_random_module() -> None:
    random.seed(11)
    one = Backoff().delay(0)
    random.seed(11)
    assert Backoff().delay(0) == one


# --- distributions (seeded, so deterministic; the bounds are statistical) -------


def test_full_jitter_at_the_cap_is_uniform_on_zero_cap() -> None:
    cap = 4.0
    backoff = Backoff(initial=0.5, max=cap, jitter="full", random=random.Random(1234))
    samples = [backoff.delay(20) for _ in range(SAMPLES)]  # 0.5 * 2**20 >> cap
    assert min(samples) >= 0.0
    assert max(samples) <= cap
    assert len(set(samples)) > SAMPLES * 0.99  # stays random at the cap
    assert statistics.fmean(samples) == pytest.approx(cap / 2, abs=0.05)
    assert statistics.pstdev(samples) == pytest.approx(cap / math.sqrt(12), abs=0.05)
    assert ks_statistic(samples, uniform_cdf(0, cap)) < KS_CRITICAL


def test_full_jitter_below_the_cap_is_uniform_on_zero_temp() -> None:
    backoff = Backoff(initial=0.5, max=100, jitter="full", random=random.Random(99))
    samples = [backoff.delay(2) for _ in range(SAMPLES)]  # temp = 2
    assert max(samples) <= 2.0
    assert ks_statistic(samples, uniform_cdf(0, 2)) < KS_CRITICAL


def test_equal_jitter_at_the_cap_is_uniform_on_half_cap_to_cap() -> None:
    cap = 4.0
    backoff = Backoff(initial=0.5, max=cap, jitter="equal", random=random.Random(4321))
    samples = [backoff.delay(30) for _ in range(SAMPLES)]
    assert min(samples) >= cap / 2
    assert max(samples) <= cap
    assert len(set(samples)) > SAMPLES * 0.99
    assert statistics.fmean(samples) == pytest.approx(0.75 * cap, abs=0.03)
    assert ks_statistic(samples, uniform_cdf(cap / 2, cap)) < KS_CRITICAL


def test_decorrelated_jitter_is_uniform_on_base_to_three_times_previous() -> None:
    base, previous = 0.5, 2.0
    backoff = Backoff(initial=base, max=100, jitter="decorrelated", random=random.Random(77))
    samples = [backoff.delay(0, previous=previous) for _ in range(SAMPLES)]
    assert min(samples) >= base
    assert max(samples) <= 3 * previous
    assert ks_statistic(samples, uniform_cdf(base, 3 * previous)) < KS_CRITICAL


def test_decorrelated_walk_stays_in_bounds_and_random_at_the_cap() -> None:
    base, cap = 0.5, 4.0
    backoff = Backoff(initial=base, max=cap, jitter="decorrelated", random=random.Random(8))
    walk = list(islice(backoff.delays(), SAMPLES))
    previous = base
    for delay in walk:
        assert base <= delay <= min(cap, 3 * previous)
        previous = delay
    # Once at the cap, a draw from uniform(base, 3 * cap) lands above the cap
    # (and is clipped to it) with probability (2 cap) / (3 cap - base).
    after_cap = [d for p, d in pairwise(walk) if p == cap]
    clipped = sum(d == cap for d in after_cap) / len(after_cap)
    assert clipped == pytest.approx(2 * cap / (3 * cap - base), abs=0.03)
    below = [d for d in after_cap if d < cap]  # the rest is uniform on [base, cap)
    assert len(set(below)) == len(below) > 1000
    assert ks_statistic(below, uniform_cdf(base, cap)) < 1.63 / math.sqrt(len(below))


def test_no_jitter_at_the_cap_is_constant() -> None:
    backoff = Backoff(initial=0.5, max=4, jitter=None)
    assert {backoff.delay(n) for n in range(3, 50)} == {4.0}


JITTERS = ["full", "equal", "decorrelated", None]


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(0, 10),
    extra=st.floats(0, 100),
    multiplier=st.floats(1, 10),
    jitter=st.sampled_from(JITTERS),
    seed=st.integers(0, 2**32),
)
# Subnormal waits (issue 11, defect 12): temp / 2 rounds, and a running
# product rounds differently from initial * multiplier ** n.
@example(initial=5e-324, extra=0.0, multiplier=1.0, jitter="equal", seed=0)
@example(initial=5e-324, extra=1e-323, multiplier=3.0, jitter="equal", seed=1)
@example(initial=5e-324, extra=1e-322, multiplier=1.5, jitter="equal", seed=2)
@example(initial=5e-324, extra=1e-322, multiplier=1.5, jitter=None, seed=3)
@example(initial=1.5e-323, extra=0.0, multiplier=2.0, jitter="full", seed=4)
@example(initial=0.0, extra=5.0, multiplier=10.0, jitter=None, seed=5)
@example(initial=1e-300, extra=1e308, multiplier=10.0, jitter="decorrelated", seed=6)
def test_every_delay_is_within_zero_and_max(
    initial: float, extra: float, multiplier: float, jitter: str | None, seed: int
) -> None:
    backoff = Backoff(
        initial=initial,
        max=initial + extra,
        multiplier=multiplier,
        jitter=jitter,  # type: ignore[arg-type]
        random=random.Random(seed),
    )
    low = initial if jitter == "decorrelated" else 0.0
    for n, delay in enumerate(islice(backoff.delays(), 400)):
        assert min(low, backoff.max) <= delay <= backoff.max
        if jitter != "decorrelated":
            assert delay <= backoff.ceiling(n)
        if jitter == "equal":
            assert delay >= backoff.ceiling(n) / 2
        if jitter is None:
            assert delay == backoff.ceiling(n)  # one definition of temp, no rounding apart


# --- the jitter experiment (benchmarks/jitter_experiment.py) runs --------------------


@pytest.fixture
def jitter_experiment() -> Any:
    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "jitter_experiment.py").is_file():
        pytest.skip("benchmarks/ is not next to tests/ (not a clone)")
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("benchmarks.jitter_experiment")
    finally:
        sys.path.remove(str(root))


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", ["none", "full", "equal", "decorrelated"])
async def test_jitter_experiment_simulation(jitter_experiment: Any, strategy: str) -> None:
    writes, seconds = await jitter_experiment.simulate(6, strategy, "test")
    assert writes >= 6  # each client wrote once successfully, plus its conflicts
    assert seconds > 0.04  # at least one read-write round trip


def test_jitter_experiment_prints_its_table(
    jitter_experiment: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert jitter_experiment.main(["--trials", "1", "--clients", "3", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("total calls (writes, mean per run)\nclients |         none")
    assert "completion time (ms of virtual time, mean per run)" in out
    assert "1 runs per point, seed 2015, asyncio on virtual time" in out


@pytest.mark.parametrize("jitter", JITTERS)
def test_an_initial_above_max_is_capped(jitter: str | None) -> None:
    """Issue 17: like stamina's wait_max, max caps the first wait too."""
    never = Backoff(initial=5, max=0, jitter=jitter)  # type: ignore[arg-type]
    assert list(islice(never.delays(), 5)) == [0.0] * 5
    capped = Backoff(initial=5, max=2, jitter=jitter, random=random.Random(3))  # type: ignore[arg-type]
    delays = list(islice(capped.delays(), 50))
    assert all(0 <= d <= 2 for d in delays)
    assert capped.ceiling(0) == 2
    assert capped.initial == 5  # kept as given (the repr shows it)
    if jitter in (None, "decorrelated"):
        assert set(delays) == {2.0}
