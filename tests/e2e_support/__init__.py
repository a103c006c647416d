"""Helpers for the tests that run real binaries (Prometheus, Alertmanager) and read the deploy files.

``compose-spec.json`` is the Compose Specification schema (see ``compose-spec.NOTICE``).
"""
