"""Channels deliver one rendered message each; `base` holds the interface they share.

The pipeline never builds a transport itself: `email_channel()` picks SMTP or the
file outbox from the settings, so a checkout without a relay runs end to end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatcher.channels.base import EmailChannel

if TYPE_CHECKING:
    from dispatcher.settings import Settings


def email_channel(settings: Settings) -> EmailChannel:
    """SMTP when `DISPATCHER_SMTP_URL` is set, else `.eml` files in `DISPATCHER_OUTBOX_DIR`.

    Raises `ValueError` (without the password) when the URL is malformed.
    """
    # Imported here so that loading `dispatcher.channels.base` stays free of smtplib/ssl.
    from dispatcher.channels.outbox import Outbox
    from dispatcher.channels.smtp import SmtpChannel, parse_smtp_url
    from dispatcher.ratelimit import RateLimiter

    if settings.smtp_url is None:
        return Outbox(settings.outbox_dir)
    target = parse_smtp_url(settings.smtp_url.get_secret_value())
    return SmtpChannel(target, rate_limiter=RateLimiter(settings.send_rate))
