"""The wire format of an email: composing, MIME, the per-dispatch wire template, DKIM, addresses, signed tokens."""
