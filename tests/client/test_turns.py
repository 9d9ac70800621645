"""TurnBudget: a burst of heavy steps is spread over loop turns (fake clock, no timing)."""

from __future__ import annotations

import asyncio

import pytest

from voharvest import ClientConfig, ParameterError
from voharvest._turns import TurnBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _turn_counter(turns: list[int], stop: asyncio.Event) -> None:
    """Counts loop turns: one increment per turn while it runs."""
    while not stop.is_set():
        turns[0] += 1
        await asyncio.sleep(0)


async def test_steps_past_the_budget_wait_for_later_turns():
    clock = FakeClock()
    budget = TurnBudget(0.004, clock=clock)
    turns = [0]
    stop = asyncio.Event()
    counter = asyncio.create_task(_turn_counter(turns, stop))
    await asyncio.sleep(0)
    started_in: list[int] = []

    async def step() -> None:
        await budget.wait()
        started_in.append(turns[0])
        clock.now += 0.001  # one millisecond of "work" each

    await asyncio.gather(*(step() for _ in range(12)))
    stop.set()
    await counter
    # 12 steps of 1 ms with a 4 ms budget: no turn holds more than 4 + 1 of them.
    per_turn = {turn: started_in.count(turn) for turn in set(started_in)}
    assert max(per_turn.values()) <= 5
    assert len(per_turn) >= 3
    assert budget.yields > 0


async def test_light_steps_never_wait():
    clock = FakeClock()
    budget = TurnBudget(0.004, clock=clock)
    for _ in range(50):
        await budget.wait()
        clock.now += 0.0001
        await asyncio.sleep(0)  # each in a turn of its own: a fresh window every time
    assert budget.yields == 0


def test_the_budget_is_configuration():
    assert ClientConfig().turn_budget > 0
    with pytest.raises(ParameterError, match="turn_budget"):
        ClientConfig(turn_budget=0)
