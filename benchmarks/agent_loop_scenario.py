"""The `agent-loop` scenario (issue 31 point 7): a 6-turn tool loop as an agent runs it, on
`ovchat serve` against llama.cpp's `llama-server` on the same model (its GGUF; ovchat serves the
export of it).

An agent's requests share a long prefix: a system prompt and tool definitions of ~2,000 tokens,
then the conversation so far. Each turn adds the model's call and the tool's result and asks
again; a server that prefills fast and reuses the cached prefix answers every turn quickly.
Per repetition, one server (started fresh), one loop:

  turn 1   system prompt (~1,500 tokens of random words) + TOOLS (6 function definitions,
           ~500 tokens) + a user task; streamed, tool_choice auto, NEW_TOKENS tokens, greedy,
           EOS ignored (the same work for both servers)
  turn k   the same, plus k-1 (assistant tool call, tool result) exchanges

The calls in the history are the loop's own (the same for both servers, ~100 tokens each with
their result), so both prefill the same conversation whatever their tiny model said; the
answers are timed, not fed back. Timed per turn: time to first output (text or a tool call's
delta), and the turn's whole time; per loop: the sum. A new system prompt per repetition, so
no cache is shared between loops; a warm-up request on another prompt first.
llama-server runs with `--jinja` (it takes tools only so) and one slot of 8,192 tokens.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import statistics
import time

from .pairing import stats
from .scenarios import Scenario, Skip, WorkerError
from .server_launch import ServerStartError, launched
from .server_load import make_prompt, sse_events
from .server_scenario import served_model, server_spec, tokens_per_word, unavailable

BACKENDS = ("ovchat-process", "llama-server")
TURNS = 6
NEW_TOKENS = 16
SYSTEM_TOKENS = 1500
CONTEXT = 8192
TOOL_NAMES = ("search_files", "read_file", "write_file", "run_tests", "list_directory", "fetch_issue")


def tools() -> list[dict]:
    """Six function definitions of an agent's usual size (~80 tokens each)."""
    described = []
    for i, name in enumerate(TOOL_NAMES):
        words = make_prompt(30, seed=77_000 + i)
        described.append({"type": "function", "function": {
            "name": name, "description": f"{name.replace('_', ' ').capitalize()}. {words}",
            "parameters": {"type": "object", "properties": {
                "path": {"type": "string", "description": "A path inside the repository, relative to its root."},
                "query": {"type": "string", "description": "What to look for, as plain words."},
                "limit": {"type": "integer", "description": "At most this many results."}},
                "required": ["path"]}}})
    return described


def conversation(system: str, turn: int) -> list[dict]:
    """The messages of turn `turn` (1-based): the task, then turn - 1 call-and-result exchanges."""
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": "Find why the tests of the parser fail, and fix it."}]
    for k in range(1, turn):
        call_id = f"call_{k}"
        arguments = json.dumps({"path": f"src/module_{k}.py", "query": "parser error", "limit": 5})
        messages += [{"role": "assistant", "content": "", "tool_calls": [
                         {"id": call_id, "type": "function",
                          "function": {"name": TOOL_NAMES[k % len(TOOL_NAMES)], "arguments": arguments}}]},
                     {"role": "tool", "tool_call_id": call_id, "content": make_prompt(60, seed=88_000 + k)}]
    return messages


def stream_turn(url: str, model: str, messages: list, timeout_s: float) -> dict:
    """One streamed chat request: time to first output (content or tool-call delta), whole time, usage."""
    body = {"model": model, "messages": messages, "tools": tools(), "tool_choice": "auto", "max_tokens": NEW_TOKENS,
            "temperature": 0, "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    start, first, usage = time.perf_counter(), None, {}
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise WorkerError(f"HTTP {response.status}: {response.read(2000).decode(errors='replace')}")
        for data in sse_events(response):
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                delta = choice.get("delta", {})
                if first is None and (delta.get("content") or delta.get("tool_calls")):
                    first = time.perf_counter()
        end = time.perf_counter()
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise WorkerError(f"{type(error).__name__}: {error}") from None
    finally:
        connection.close()
    if first is None:
        raise WorkerError("the answer had neither text nor a tool call")
    return {"ttft_ms": (first - start) * 1000, "turn_ms": (end - start) * 1000,
            "prompt_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens")}


def _spec(backend: str, files, profile):
    spec = server_spec(backend, files, 1, profile)
    if backend != "llama-server":
        return spec
    command = list(spec.command)
    command[command.index("-c") + 1] = str(CONTEXT)
    return dataclasses.replace(spec, command=[*command, "--jinja"])


def agent_loop_rep(ctx, files, device, backend, rep) -> dict:
    if device != "CPU":
        raise Skip("the agent-loop scenario runs on CPU")
    if reason := unavailable(backend, files, ctx.profile):
        raise Skip(reason)
    words = int(SYSTEM_TOKENS / tokens_per_word(files.gguf))
    system = "You are a coding agent. Use the tools to act on the repository. " + make_prompt(words, seed=990_000 + rep)
    try:
        with launched(_spec(backend, files, ctx.profile), ctx.out / "logs" / f"agent-loop-{backend}.log") as url:
            model = served_model(url)
            warm = "You are a coding agent. " + make_prompt(words, seed=980_000 + rep)  # another prefix: nothing cached
            stream_turn(url, model, conversation(warm, 1), ctx.profile.timeout_s)
            turns = [stream_turn(url, model, conversation(system, k), ctx.profile.timeout_s) for k in range(1, TURNS + 1)]
    except ServerStartError as error:
        raise WorkerError(str(error)) from None
    return {"turns": turns, "loop_ms": sum(t["turn_ms"] for t in turns),
            "first_turn_ttft_ms": turns[0]["ttft_ms"],
            "later_turns_ttft_ms_p50": statistics.median(t["ttft_ms"] for t in turns[1:]),
            "prompt_tokens": [t["prompt_tokens"] for t in turns]}


def agent_loop_summary(reps: list[dict]) -> dict:
    return {"reps": reps, "summary": {
        "loop ms": stats(r["loop_ms"] for r in reps),
        "turn 1 TTFT ms": stats(r["first_turn_ttft_ms"] for r in reps),
        "turns 2-6 TTFT p50 ms": stats(r["later_turns_ttft_ms_p50"] for r in reps),
        **{f"turn {k} TTFT ms": stats(r["turns"][k - 1]["ttft_ms"] for r in reps) for k in range(1, TURNS + 1)}}}


def agent_loop_figures(rep: dict) -> dict:
    """Lower is better."""
    return {"agent loop ms, 6 turns": rep["loop_ms"], "TTFT ms, turn 1 (~2,000-token prefix)": rep["first_turn_ttft_ms"],
            "TTFT p50 ms, turns 2-6 (cached prefix)": rep["later_turns_ttft_ms_p50"]}


AGENT_LOOP = Scenario("agent-loop", "A 6-turn tool loop with a ~2,000-token system prompt and tools, against "
                      "llama-server (issue 31)", agent_loop_rep, agent_loop_summary, agent_loop_figures,
                      reps=lambda p: p.server_reps + 1, backends=BACKENDS, by_name_only=True)
