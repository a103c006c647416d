"""Zero-code instrumentation and server hooks (gunicorn)."""
