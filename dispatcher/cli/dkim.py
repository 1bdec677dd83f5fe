"""`dispatcher dkim keygen`: a DKIM key pair, the DNS record to publish, the settings to set."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from dispatcher.cli.common import EXIT_OK, UserError, settings_of
from dispatcher.mail import dkim

DEFAULT_DIR = Path("var/dkim")


def cmd_dkim_keygen(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    domain = args.domain or settings.dkim_domain or dkim.address_domain(settings.mail_from)
    if not domain:
        raise UserError(
            f"no domain: DISPATCHER_MAIL_FROM {settings.mail_from!r} has none and "
            "DISPATCHER_DKIM_DOMAIN is unset; pass --domain news.example.org"
        )
    # A dated selector lets the next key go live next to this one (rotation without a gap).
    selector = args.selector or f"cw{dt.date.today():%Y%m}"
    if args.out:
        directory = Path(args.out)
    elif settings.dkim_private_key_file is not None:
        directory = settings.dkim_private_key_file.parent
    else:
        directory = DEFAULT_DIR
    try:
        path, record = dkim.keygen(directory, selector, domain, kind=args.type)
    except dkim.DkimError as error:
        raise UserError(str(error)) from None
    except FileExistsError as error:
        raise UserError(
            f"{error.filename} exists; choose another --selector (keys are never overwritten)"
        ) from None
    except OSError as error:
        raise UserError(f"cannot write the key into {directory}: {error.strerror}") from None
    path = path.resolve()
    print(f"Private key (keep it secret, mode 0600): {path}")
    print()
    print("Publish this DNS record (zone-file form; values over 255 characters are split):")
    print(f"  {record}")
    print("DNS web interfaces want the name and the value on their own:")
    print(f"  name:  {selector}._domainkey.{domain.lower().rstrip('.')}")
    print(f"  value: {dkim.txt_value(record)}")
    print()
    print("Then set (environment or .env):")
    print(f"  DISPATCHER_DKIM_DOMAIN={domain.lower().rstrip('.')}")
    print(f"  DISPATCHER_DKIM_SELECTOR={selector}")
    print(f"  DISPATCHER_DKIM_PRIVATE_KEY_FILE={path}")
    warning = dkim.alignment_warning(settings.mail_from, domain)
    if warning:
        print()
        print(f"warning: {warning}")
    if args.type == "ed25519":
        print()
        print(
            "warning: not every receiver verifies Ed25519 signatures yet (RFC 8463 advises "
            "signing with RSA as well); Gmail needs an RSA key. Use --type rsa for the one key "
            "the dispatcher signs with."
        )
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("dkim", help="DKIM keys")
    actions = group.add_subparsers(dest="dkim_command", required=True, metavar="ACTION")
    keygen = actions.add_parser(
        "keygen", help="write a new DKIM private key and print the DNS record to publish"
    )
    keygen.add_argument(
        "--selector", help="DNS selector (default: cwYYYYMM of today, so keys can be rotated)"
    )
    keygen.add_argument(
        "--domain", help="signing domain (default: $DISPATCHER_DKIM_DOMAIN, else the From domain)"
    )
    keygen.add_argument(
        "--type",
        choices=["rsa", "ed25519"],
        default="rsa",
        help="key type (default: rsa, 2048 bits)",
    )
    keygen.add_argument(
        "--out",
        help="directory for the key (default: that of $DISPATCHER_DKIM_PRIVATE_KEY_FILE, "
        f"else {DEFAULT_DIR})",
    )
    keygen.set_defaults(handler=cmd_dkim_keygen)
