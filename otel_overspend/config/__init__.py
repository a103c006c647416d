"""Settings, validated once, and the plain objects built from them."""
