"""Options and markers of the chaos tests.

`--chaos-duration SECONDS` or `--chaos-faults N` turns on the long randomized campaign
(tests/chaos/test_campaign.py), which is skipped without them so `make test` stays short:

    make chaos DURATION=600            # or: make chaos FAULTS=100
    .venv/bin/python -m pytest tests/chaos --chaos-duration 600 [--chaos-seed N]
    .venv/bin/python -m pytest tests/chaos/test_campaign.py --chaos-faults 15 \
        --chaos-kinds corrupt_segment,wipe_data_dir --chaos-report report.json

(see tests/chaos/options.py for every option).

pytest honours `pytest_addoption` only in initial conftests (the rootdir's, and those
of the paths named on the command line), which is why the option works when
`tests/chaos` (or a file in it) is named. `tests/chaos/options.py` holds the same hook
as a plugin for the root conftest (`pytest_plugins = ["tests.chaos.options"]`), so the
option is also known when pytest runs from the root with no path.
"""

from __future__ import annotations

import pytest

from tests.chaos.options import (
    REPORT_KEY,
    add_chaos_options,
    campaign_enabled,
    campaign_seed,
    campaign_timeout_s,
    chaos_option,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_chaos_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "chaos_campaign: the long randomized fault campaign (--chaos-duration/--chaos-faults)",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    """Logs the campaign's seed first thing, so a failed run can be replayed."""
    if not campaign_enabled(config):
        return None
    faults = chaos_option(config, "chaos_faults")
    length = (
        f"{faults} faults"
        if faults is not None
        else f"duration {chaos_option(config, 'chaos_duration'):g}s"
    )
    return (
        f"chaos campaign: {length}, seed {campaign_seed(config)}"
        f" (replay with --chaos-seed {campaign_seed(config)})"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The campaign's REPORT last, whether it passed or failed."""
    text = terminalreporter.config.stash.get(REPORT_KEY, None)
    if text:
        terminalreporter.write_sep("=", "chaos campaign report")
        terminalreporter.write_line(text)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The campaign runs for --chaos-duration: give it a timeout that fits (the suite's
    default per-test timeout is far shorter)."""
    timeout_s = campaign_timeout_s(config)
    if timeout_s is None:
        return
    for item in items:
        if item.get_closest_marker("chaos_campaign") is not None:
            item.add_marker(pytest.mark.timeout(timeout_s))
