"""The `brook` client CLI: one module per command (topics, produce, consume, groups, perf),
`options` for the values they share, `main` for the parser and the dispatch.

    python -m brook.client.cli --bootstrap HOST:PORT topic list

The `brook` console script itself is `brook.services.cli`, which adds the server commands.
"""

from brook.client.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
