"""Small utilities every layer uses: bounded maps, fork hooks, label caps, model-name patterns."""
