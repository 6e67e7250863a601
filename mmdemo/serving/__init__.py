"""Serving the app: the starting page, hosting (Spaces, ZeroGPU), metrics, and fetching what machine clients name."""
