"""The `crlhf` umbrella command."""
