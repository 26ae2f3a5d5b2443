"""Conversation-affine routing for the Ray Serve app: the turns of one conversation go to the
replica that already holds its prefix in its KV cache (prefix caching), while that replica is
alive and has room.

The conversation is named by the client in the `X-Session-ID` header (Ray's proxy puts it in the
request's metadata before routing; the body, where the prefix is, is not read before routing).
A conversation's replica is the one with the highest hash of (conversation, replica id)
(rendezvous hashing): every proxy computes the same choice with no shared state, and when a
replica goes or comes only the conversations of that replica move. That replica is the first
rank offered to Ray's router; the others the second, so when it is full (at its
max_ongoing_requests) or gone the turn goes to the least loaded of the rest. Requests without
the header are routed as by Ray's default (power of two choices).

A deployment of several models (ray_models.py, `multiplexed=True` in the router's kwargs) routes a
request naming its model (the `serve_multiplexed_model_id` header) by Serve's multiplexing first:
to a replica holding that model, else to one holding the fewest (Ray's proxies set that header
from the body's `model` where OVCHAT_RAY_MODEL_HEADER=1, ray_proxy.py).
"""

from __future__ import annotations

import hashlib
from typing import List, Optional

from ray.serve._private.request_router.pow_2_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import PendingRequest, RunningReplica


def affinity(conversation: str, replica_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{conversation}\0{replica_id}".encode(), digest_size=8).digest(), "big")


def ranked(conversation: str, replicas: List[RunningReplica]) -> List[List[RunningReplica]]:
    """The conversation's replica first, then the rest (who among them: the router's queue lengths)."""
    home = max(replicas, key=lambda replica: affinity(conversation, replica.replica_id.unique_id))
    rest = [replica for replica in replicas if replica is not home]
    return [[home], rest] if rest else [[home]]


class ConversationRouter(PowerOfTwoChoicesRequestRouter):
    def initialize_state(self, multiplexed: bool = False, affinity: bool = True, **kwargs):
        super().initialize_state(**kwargs)
        self.multiplexed, self.affinity = multiplexed, affinity

    async def choose_replicas(self, candidate_replicas: List[RunningReplica],
                              pending_request: Optional[PendingRequest] = None) -> List[List[RunningReplica]]:
        metadata = pending_request.metadata if pending_request is not None else None
        if metadata is not None and metadata.multiplexed_model_id and getattr(self, "multiplexed", False):
            return await super().choose_replicas(candidate_replicas, pending_request)  # the model's holders first
        conversation = metadata.session_id if metadata is not None and getattr(self, "affinity", True) else ""
        if not conversation or not candidate_replicas:
            return await super().choose_replicas(candidate_replicas, pending_request)
        return ranked(conversation, candidate_replicas)
