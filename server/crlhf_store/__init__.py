"""crlhf package."""
