"""Responses that remember, on the wire: `store` and `previous_response_id` in a request, and the
routes of a stored response (`GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`).

A request continues a stored response by reading its context (its input items, then its output
items) as the turns before its own `input`; the new response's input items are that context
then its input, so each stored response carries its whole chain (server/response_store.py).
`store` defaults to true, as OpenAI's API, when the server stores at all (a server with storing
off treats an absent `store` as false and refuses `store: true`). An id that is unknown, expired,
deleted or another API key's is a 404 that names it. Every refusal names its field. The store
is called on worker threads (its checkpoints wait on the disk: server/response_store.py).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Awaitable, Callable, Mapping

import anyio

from .errors import APIError, bad_request, server_error, unsupported
from .response_store import ResponseStore
from .responses_request import ResponsesRequest, parse_responses, read_store

log = logging.getLogger("ovchat.server")
_OFF = " (this server keeps no responses: it runs with storing off, --no-store; send the whole conversation in 'input')"
LIST_LIMIT_MAX = 100


async def read_request(body: dict, max_n: int, store: ResponseStore | None, owner: str) -> ResponsesRequest:
    """A /v1/responses body checked, with the stored turns its `previous_response_id` names."""
    wanted, previous = read_store(body, default=store is not None)
    if store is None and wanted:
        raise unsupported("store", _OFF)
    history = []
    if previous is not None:
        if store is None:
            raise unsupported("previous_response_id", _OFF)
        history = (await _found(store, previous, owner, "previous_response_id")).context()
    return parse_responses(body, max_n, history, store_default=store is not None)


def keeper(store: ResponseStore | None, owner: str,
           request: ResponsesRequest) -> Callable[[dict], Awaitable[None]] | None:
    """What keeps the finished Response object when the request asked to store it (else None)."""
    if store is None or not request.store:
        return None

    async def keep(response: dict) -> None:
        try:
            await anyio.to_thread.run_sync(store.put, owner, response, request.input_items)
        except sqlite3.Error as error:  # disk full, a file gone read-only: this answer fails, the server stays up
            log.error("ovchat serve: could not store response %s: %s", response["id"], error)
            raise server_error(f"The answer could not be stored ({error}); retry, or send store: false.") from None
    return keep


async def retrieve(store: ResponseStore | None, owner: str, response_id: str, query: Mapping) -> dict:
    _no_query(query, ())
    return (await _found(store, response_id, owner)).response


async def delete(store: ResponseStore | None, owner: str, response_id: str, query: Mapping) -> dict:
    _no_query(query, ())
    if store is None or not await anyio.to_thread.run_sync(store.delete, response_id, owner):
        raise _not_found(response_id, "response_id")
    return {"id": response_id, "object": "response", "deleted": True}


async def input_items(store: ResponseStore | None, owner: str, response_id: str, query: Mapping) -> dict:
    """OpenAI's list of the model's input items (the earlier turns' too; never the instructions):
    `order` desc (default) or asc, `limit` 1..100 (default 20), `after` an item id (the page after it)."""
    _no_query(query, ("limit", "order", "after"))
    limit = query.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= LIST_LIMIT_MAX:
        raise bad_request(f"'limit' must be a whole number between 1 and {LIST_LIMIT_MAX}, got {limit!r}.",
                          param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request(f"'order' must be 'asc' or 'desc', got {order!r}.", param="order")
    items = (await _found(store, response_id, owner)).input_items
    items = items[::-1] if order == "desc" else list(items)
    if "after" in query:
        ids = [item.get("id") for item in items]
        if query["after"] not in ids:
            raise bad_request(f"'after' is {query['after']!r}, which is no input item of {response_id!r}; "
                              "give the last_id of the page before.", param="after")
        items = items[ids.index(query["after"]) + 1:]
    page = items[:int(limit)]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > len(page)}


async def _found(store: ResponseStore | None, response_id: str, owner: str, param: str = "response_id"):
    stored = await anyio.to_thread.run_sync(store.get, response_id, owner) if store is not None else None
    if stored is None:
        raise _not_found(response_id, param)
    return stored


def _not_found(response_id: str, param: str) -> APIError:
    return APIError(404, f"No stored response with id {response_id!r}: it is unknown, expired, deleted, or was made "
                    "with another API key (or with store: false).", param=param, code="response_not_found")


def _no_query(query: Mapping, accepted: tuple) -> None:
    for name in query:
        if name not in accepted:
            raise unsupported(name)
