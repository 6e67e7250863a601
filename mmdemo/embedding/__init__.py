"""Images to vectors: decoding with limits, batched CLIP encoding, and the embedding cache."""
