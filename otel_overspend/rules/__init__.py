"""Prometheus recording and alerting rules, rendered from the thresholds."""
