"""Operator commands: ``python -m chalicelib.cli token create --name ci --scopes builds,stagings``;
and ``python -m chalicelib.cli launch <repository> [--ref] [--api URL] [--open]`` (launch_cli.py).

Talks to the table named by the same environment variables the app reads
(and to ``AWS_ENDPOINT_URL`` when set, e.g. local mode's embedded DynamoDB).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from chalicelib import launch_cli
from chalicelib.errors import BinderError
from chalicelib.models import SCOPES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.cli", description=__doc__)
    resources = parser.add_subparsers(dest="resource", required=True)
    launch_cli.add_parser(resources)
    tokens = resources.add_parser("token", help="API tokens")
    actions = tokens.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token and print it (once)")
    create.add_argument("--name", required=True, help="who or what the token is for")
    create.add_argument("--scopes", required=True, help=f"comma-separated, from: {', '.join(SCOPES)}")
    create.add_argument("--ttl-days", type=int, default=0, help="expire after this many days (0: never)")
    actions.add_parser("list", help="list tokens (never their values)")
    revoke = actions.add_parser("revoke", help="revoke a token by its value or its id")
    revoke.add_argument("token", help="the token, or the id that 'list' shows")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.resource == "launch":  # an HTTP client of the API: no table, no AWS
        return launch_cli.launch(args)
    from chalicelib.context import get_services

    auth = get_services().auth
    try:
        if args.action == "create":
            scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
            plain, record = auth.create_token(args.name, scopes, ttl=args.ttl_days * 86400 or None)
            print(plain)
            print(f"id {record.digest[:12]}  name {record.name}  scopes {','.join(record.scopes)}"
                  "  (the token is shown only now)", file=sys.stderr)
        elif args.action == "list":
            for token in auth.tokens.all():
                expiry = f"  expires {token.expires_at}" if token.expires_at else ""
                print(f"{token.digest[:12]}  {token.name}  {','.join(token.scopes)}{expiry}")
        else:
            record = auth.revoke(args.token)
            print(f"revoked {record.digest[:12]} ({record.name})")
    except BinderError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
