"""The review page's pure parts: image decoding and encoding, the review queue, the figures."""
