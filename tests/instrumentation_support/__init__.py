"""Helpers for the tests that drive the real ``openai`` and ``anthropic`` clients under real
instrumentations (``tests/stacks/test_instrumentations_*.py``).

``scenarios.py`` runs in a subprocess, one per instrumentation set (instrumentations patch
the clients globally and some read their settings once); ``runs.py`` starts those
subprocesses and reads their results; ``expected.py`` holds the hand-computed answers.
"""
