"""Brook's tests (a package, so `tests.harness` imports the same way from every test)."""
