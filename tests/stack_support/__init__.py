"""Runners and helpers for the tests that drive whole framework stacks (``tests/test_stack_*.py``)
against examples/fake_provider.py, each run in a process of its own."""
