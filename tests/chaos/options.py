"""The chaos command-line options and their readers.

    --chaos-duration SECONDS   run the campaign for this long (faults keep coming)
    --chaos-faults N           run exactly N faults instead (whatever time it takes)
    --chaos-seed N             replay a campaign (default: a random seed, logged)
    --chaos-kinds a,b          draw only these fault kinds (names in test_campaign.KINDS)
    --chaos-report FILE        also write the JSON report here (default: pytest tmp dir)

The campaign runs only when --chaos-duration or --chaos-faults is given.

`pytest_addoption` here makes this module usable as a plugin from the root conftest
(`pytest_plugins = ["tests.chaos.options"]`); tests/chaos/conftest.py registers the same
options when pytest is started on tests/chaos. Registering twice is harmless.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

# Room the campaign gets beyond --chaos-duration: healing, the drain and the final read.
CAMPAIGN_TIMEOUT_MARGIN_S = 300.0
# With --chaos-faults, the hang bound per fault: the fault, a heal (which may restart the
# whole cluster once) and its health checks, on a loaded 2-core box.
CAMPAIGN_TIMEOUT_PER_FAULT_S = 240.0
SEED_KEY = pytest.StashKey[int]()
# The campaign's rendered REPORT, printed in the terminal summary (so it shows without -s).
REPORT_KEY = pytest.StashKey[str]()


def add_chaos_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "randomized fault campaign (tests/chaos)")
    try:
        group.addoption(
            "--chaos-duration",
            type=float,
            default=None,
            metavar="SECONDS",
            help="run the randomized fault campaign for SECONDS (skipped when not given)",
        )
        group.addoption(
            "--chaos-faults",
            type=int,
            default=None,
            metavar="N",
            help="run the campaign for exactly N faults (overrides --chaos-duration)",
        )
        group.addoption(
            "--chaos-kinds",
            default=None,
            metavar="KIND,KIND",
            help="draw only these fault kinds (comma-separated names; default: all)",
        )
        group.addoption(
            "--chaos-report",
            default=None,
            metavar="FILE",
            help="write the campaign's JSON report to FILE (default: under the pytest tmp dir)",
        )
        group.addoption(
            "--chaos-seed",
            type=int,
            default=None,
            metavar="N",
            help="seed of the campaign's random choices (default: random, logged)",
        )
    except ValueError:
        pass  # already registered by the other hook (plugin and conftest both loaded)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_chaos_options(parser)


def chaos_option(config: pytest.Config, name: str) -> Any:
    """The option's value, or None when no conftest registered it."""
    return config.getoption(name, default=None)


def campaign_enabled(config: pytest.Config) -> bool:
    return (
        chaos_option(config, "chaos_duration") is not None
        or chaos_option(config, "chaos_faults") is not None
    )


def campaign_timeout_s(config: pytest.Config) -> float | None:
    faults = chaos_option(config, "chaos_faults")
    if faults is not None:
        return int(faults) * CAMPAIGN_TIMEOUT_PER_FAULT_S + CAMPAIGN_TIMEOUT_MARGIN_S
    duration = chaos_option(config, "chaos_duration")
    return None if duration is None else float(duration) + CAMPAIGN_TIMEOUT_MARGIN_S


def campaign_seed(config: pytest.Config) -> int:
    """--chaos-seed, or one random seed chosen once per session (so it can be logged)."""
    if SEED_KEY not in config.stash:
        seed = chaos_option(config, "chaos_seed")
        config.stash[SEED_KEY] = int(seed) if seed is not None else random.randrange(2**31)
    return config.stash[SEED_KEY]
