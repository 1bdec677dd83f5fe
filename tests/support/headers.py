"""What a newsletter's header section may hold, for tests that look for injected headers."""

from __future__ import annotations

#: Exactly the top-level headers the dispatcher writes on a newsletter, each once.
HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
    "List-Unsubscribe-Post", "Auto-Submitted", "Feedback-ID", "Content-Type", "MIME-Version",
    "Content-Language",
]  # fmt: skip
