"""The delivery ledger: the database is the truth about what was sent to whom."""
