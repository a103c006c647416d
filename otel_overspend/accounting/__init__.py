"""Counting calls: the ledger of counters and windows, open requests, and the pure signals on a snapshot."""
