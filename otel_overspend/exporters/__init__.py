"""Ways out for the counts: the Prometheus collector and its HTTP endpoint, OTLP metrics,
attributes on exported spans. Each reads a processor's snapshot; none imports the processor."""
