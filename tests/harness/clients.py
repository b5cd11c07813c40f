"""Client fixtures shared by integration tests: Brook clients that are always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from brook.client.admin import Admin


@pytest.fixture
async def admins() -> AsyncIterator[Callable[[str], Admin]]:
    """A factory of Admin clients, all closed at teardown."""
    made: list[Admin] = []

    def make(bootstrap: str) -> Admin:
        admin = Admin(bootstrap)
        made.append(admin)
        return admin

    try:
        yield make
    finally:
        for admin in made:
            await admin.close()
