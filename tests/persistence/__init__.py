"""Persistence tests: models, backends, and the backend contract suite."""

import pytest

# contract.py is a plain module imported by test_contract.py; have pytest rewrite its
# asserts so failures show the compared values.
pytest.register_assert_rewrite(f"{__name__}.contract")
