"""Model loading and lifetime: registry (data), one loader per family, and the manager."""
