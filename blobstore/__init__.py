"""blobstore: a replicated, self-healing, erasure-coded blob store with an S3 API."""

__version__ = "0.1.0"
