"""The `ovchat` command: a local chat LLM engine on OpenVINO.

This module only wires subcommands: cli/runtime.py (generate, chat, demo, devices, info),
cli/remote.py (generate and chat with --server), cli/serve.py (serve), cli/models.py (list,
show, rm, ps), tools/export_cli.py
(export), benchmarks/cli.py (bench). Each module's `register(subparsers)` adds its parsers and
sets `func`; heavy imports happen inside the handlers, so `ovchat generate` never loads torch.
"""

import argparse
import os
import sys

from ..engine.errors import EngineError  # stdlib only: parsing flags imports no OpenVINO
from . import remote


def build_parser() -> argparse.ArgumentParser:
    from ..benchmarks import cli as bench_cli
    from ..tools import export_cli
    from . import models, runtime, serve

    parser = argparse.ArgumentParser(prog="ovchat", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runtime.register(sub)
    export_cli.register(sub)
    bench_cli.register(sub)
    serve.register(sub)
    models.register(sub)
    for command in remote.COMMANDS:
        remote.add_client_flags(sub.choices[command])
    return parser


def _handler(args):
    """The subcommand's handler; `generate`/`chat --server URL` go to the server's client (no
    OpenVINO in this process)."""
    if args.command in remote.COMMANDS and args.server:
        return remote.COMMANDS[args.command]
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
