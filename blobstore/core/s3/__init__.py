"""The S3 protocol as pure functions over bytes and values (h11 style): no I/O, no clock.

The gateway feeds these modules what it received and acts on what they return:

- ``errors``: the one table of S3 error codes (``S3Error`` subclasses) and ``from_domain``.
- ``sigv4``: parse and verify Signature V4 (header and presigned); ``sigv4_signing``: the
  canonical request and our own signer, shared by both sides.
- ``xml``: render result and ``<Error>`` documents; parse request bodies safely.
- ``names``: bucket and key validation. ``ranges``: the ``Range`` header.

Use them qualified (``sigv4.parse_authorization``, ``errors.NoSuchKey``): several modules
define names that mirror S3's, and the module says which protocol element is meant.
"""

from blobstore.core.s3 import errors, names, ranges, sigv4, sigv4_signing, xml

__all__ = ["errors", "names", "ranges", "sigv4", "sigv4_signing", "xml"]
