"""The offline report: trace files in, the same attribution and signals, a diagnosis out."""
