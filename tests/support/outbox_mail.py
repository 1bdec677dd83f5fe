"""Reading test emails: the ones the web app wrote into an outbox directory (`.eml`
files), and the text parts of any message."""

from __future__ import annotations

import email
import email.policy
import time
from email.message import EmailMessage
from pathlib import Path


def confirmation_email(outbox: Path, address: str, *, timeout: float = 10) -> EmailMessage:
    """The one double opt-in email to `address` in `outbox`.

    The app mails in the background, after the answer page: wait for it; more than one is
    a failure (a reader must get one confirmation, not two)."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(outbox.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            if address in str(message["To"]):
                found.append(message)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(found) == 1, f"expected one confirmation email to {address}: {found}"
    return found[0]


def body_text(message: EmailMessage, subtype: str) -> str:
    """The decoded text/`subtype` part ("plain" or "html") of `message`."""
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    content: str = part.get_content()
    return content
