"""The `ovchat` command: a local chat LLM engine on OpenVINO.

This module only wires subcommands; each lives beside the code it drives:
engine/cli.py (generate, chat, devices, info, demo), tools/export_cli.py (export),
benchmarks/cli.py (bench), server/cli.py (serve). `generate` and `chat` with --server are the
server's client (server/client.py): composed here, so the runtime imports nothing of the server. Each module's `register(subparsers)` adds its parsers and sets
`func`; heavy imports happen inside the handlers, so `ovchat generate` never loads torch."""

import argparse
import os
import sys

from ..engine.errors import EngineError  # stdlib only: parsing flags imports no OpenVINO
from ..server import client  # stdlib only, as above


def build_parser() -> argparse.ArgumentParser:
    from ..engine import cli as engine_cli
    from . import export_cli
    from ..benchmarks import cli as bench_cli
    from ..server import cli as server_cli

    parser = argparse.ArgumentParser(prog="ovchat", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    engine_cli.register(sub)
    export_cli.register(sub)
    bench_cli.register(sub)
    server_cli.register(sub)
    for command in CLIENT_COMMANDS:
        client.add_client_flags(sub.choices[command])
    return parser


CLIENT_COMMANDS = {"generate": "run_generate", "chat": "run_chat"}


def _handler(args):
    """The subcommand's handler; `generate`/`chat --server URL` go to the server's client (no
    OpenVINO in this process)."""
    if args.command in CLIENT_COMMANDS and args.server:
        return getattr(client, CLIENT_COMMANDS[args.command])
    return args.func


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _handler(args)(args) or 0
    except EngineError as error:
        print(f"ovchat: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\novchat: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # not foreseen: still one line for the user, the traceback on demand
        if os.environ.get("OVCHAT_DEBUG"):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"ovchat: unexpected {type(error).__name__}: {first}. This is a bug in ovchat: rerun with "
              "OVCHAT_DEBUG=1 to see where it happened, and report it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
