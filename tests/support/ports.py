"""Free loopback ports for the servers a test starts (and for a port where nothing listens)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that is free now. Servers that probe their own port after starting
    (aiosmtpd) or that another process binds (Postfix, rspamd, Synapse) cannot take port 0."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
