"""`modelship review`: a web page where people label sampled production inputs.

It reads and writes a production area on a dataset volume (modelship_api.samples) and serves
one HTML page, a small JSON API and /metrics with the stdlib; the pure parts are in
modelship.core.review."""
