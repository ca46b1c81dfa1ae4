"""Options for the simulations: ``--seed=N`` runs (replays) only that seed."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed", action="store", type=int, default=None,
                     help="run only this simulation seed (replays it exactly)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seed" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("--seed", default=None)
    count = getattr(metafunc.module, "SEEDS_PER_SIZE", {}).get(
        metafunc.function.__name__, 100)
    seeds = [chosen] if chosen is not None else list(range(count))
    metafunc.parametrize("sim_seed", seeds)
