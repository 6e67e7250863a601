"""Zero-shot classification with CLIP: labels x prompt templates -> a linear classifier."""
