"""Gallery search: CLIP embeddings of images in a FAISS index, queried by text or image."""
