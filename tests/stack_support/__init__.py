"""Runners and helpers for the tests that drive whole framework stacks (``tests/stacks/test_stack_*.py``)
against examples/fake_provider.py, each run in a process of its own."""
