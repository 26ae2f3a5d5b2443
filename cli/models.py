"""`ovchat list`, `ovchat show NAME`, `ovchat rm NAME` (the models on disk, engine/catalog.py) and
`ovchat ps` (what a running `ovchat serve` has loaded, from its GET /v1/models).

    ovchat list                      name, source, export recipe, size, fidelity
    ovchat show smollm2-135m-instruct-int4
    ovchat rm old-model --yes
    ovchat ps --server http://127.0.0.1:8000

None of them loads OpenVINO; `show` reads every file once to check its sha256 against the manifest.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..engine.errors import EngineError


def register(sub) -> None:
    p = sub.add_parser("list", help="the models in ovchat's cache: name, source, recipe, size, fidelity")
    p.add_argument("--models-dir", metavar="DIR", help="another folder of models (default: ovchat's cache)")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="a model's manifest, chat template, tool-call format, decoding and files")
    p.add_argument("name", help="a name from `ovchat list`, or a model folder or .gguf")
    p.add_argument("--models-dir", metavar="DIR", help="another folder of models (default: ovchat's cache)")
    p.add_argument("--template", action="store_true", help="print the whole chat template")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("rm", help="delete a model from ovchat's cache")
    p.add_argument("name")
    p.add_argument("--models-dir", metavar="DIR", help="another folder of models (default: ovchat's cache)")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("ps", help="the models a running `ovchat serve` serves: state, memory, requests, idle time")
    p.add_argument("--server", metavar="URL", default=os.environ.get("OVCHAT_SERVER") or "http://127.0.0.1:8000",
                   help="the server (default: $OVCHAT_SERVER, else %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("OVCHAT_API_KEY") or None,
                   help="the server's API key (default: $OVCHAT_API_KEY)")
    p.set_defaults(func=cmd_ps)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _folder(args):
    return Path(args.models_dir).expanduser() if args.models_dir else None


def cmd_list(args) -> int:
    from ..engine.catalog import list_models, models_dir
    entries = list_models(_folder(args))
    if not entries:
        print(f"No models in {_folder(args) or models_dir()}; `ovchat export default` prepares the default one.")
        return 0
    rows = [["NAME", "FORMAT", "SIZE", "RECIPE", "FIDELITY", "SOURCE"]]
    rows += [[e.name, e.format, _size(e.size_bytes), e.recipe, e.fidelity, e.source] for e in entries]
    print(_table(rows))
    return 0


def _entry(args):
    from ..engine.catalog import describe, find_model
    path = Path(args.name).expanduser()
    if "/" in args.name and (entry := describe(path)) is not None:
        return entry
    return find_model(args.name, _folder(args))


def cmd_show(args) -> int:
    from ..engine.catalog import chat_template
    from ..engine.model import resolve, verify
    from ..engine.tool_parsers import format_for_template

    entry = _entry(args)
    info = resolve(entry.path)
    template = chat_template(entry)
    print(f"name          {entry.name}\npath          {entry.path}\nformat        {entry.format}")
    print(f"architecture  {info.architecture or '-'}\ncontext       {info.context_length or '-'} tokens")
    print(f"size          {_size(entry.size_bytes)} (weights {_size(info.size_bytes)})")
    print(f"source        {entry.source}\nrecipe        {entry.recipe}\nfidelity      {entry.fidelity}")
    print(f"decoding      {json.dumps(info.generation_defaults)} (recommended: what answers use by default)")
    print(f"tool calls    {format_for_template(template) if template else '- (no chat template)'}")
    if template is None:
        print("chat template - (none: prompts are sent as they are)")
    elif args.template:
        print("chat template\n" + template)
    else:
        first = template.strip().splitlines()[0] if template.strip() else ""
        print(f"chat template {len(template)} characters: {first[:70]}{'…' if len(first) > 70 else ''} (--template)")
    problems = verify(info, hashes=True)
    recorded = (entry.manifest or {}).get("files") or {}
    if recorded:
        print(f"files         {len(recorded)} recorded in ovchat.json; "
              + ("all match their size and sha256" if not problems else "DAMAGED:"))
        for name, record in sorted(recorded.items()):
            print(f"  {name:30} {_size(record.get('size_bytes')):>10}  {str(record.get('sha256', '-'))[:16]}")
    elif entry.format == "openvino":
        print("files         no record (not exported by ovchat): " + ("weights complete" if not problems else "DAMAGED:"))
    for problem in problems:
        print(f"  ! {problem}")
    if entry.manifest and entry.manifest.get("versions"):
        versions = entry.manifest["versions"]
        print("exported with " + ", ".join(f"{k} {v}" for k, v in versions.items()
                                           if k in ("openvino", "openvino-genai", "optimum-intel", "ovchat")))
    return 1 if problems else 0


def cmd_rm(args) -> int:
    from ..engine.catalog import find_model, remove_model
    entry = find_model(args.name, _folder(args))
    if not args.yes:
        if not sys.stdin.isatty():
            raise EngineError(f"`ovchat rm {args.name}` asks before deleting; pass --yes to delete without asking.")
        answer = input(f"Delete {entry.path} ({_size(entry.size_bytes)})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Kept.")
            return 1
    remove_model(entry)
    print(f"Deleted {entry.name} ({_size(entry.size_bytes)} freed).")
    return 0


def cmd_ps(args) -> int:
    from ..server.client import Client
    listed = Client(args.server, args.api_key, timeout_s=30).get("/v1/models").get("data", [])
    rows = [["NAME", "STATE", "MEMORY", "REQUESTS", "UNLOADS IN", "NOTE"]]
    for card in listed:
        state = card.get("state", "loaded")  # a one-model server lists its model, loaded
        left = card.get("idle_unload_in_s")
        if card.get("pinned"):
            until, note = "never", "pinned"
        elif state != "loaded":
            until, note = "-", card.get("error", "")
        elif left is None:
            until, note = ("forever" if card.get("requests_in_flight", 0) == 0 else "busy"), ""
        else:
            until, note = f"{left:.0f} s", ""
        rows.append([card["id"], state, _size(card.get("memory_bytes")), str(card.get("requests_in_flight", "-")),
                     until, note])
    print(_table(rows))
    return 0
