"""The learning memory: pamphlets in SQL (source of truth) with a FAISS index beside them."""
