"""The messages between an EngineProcess (process.py) and its child (process_child.py): typed,
pickled as they are over the pipe, never tuples read by position.

Parent to child: Submit, Cancel, AskStats, Close. Child to parent: Ready or LoadFailed once,
then Events (a batching step's events of every request in it, each tagged with its request)
and Stats. A Submit is never answered as such: its request's first event (Accepted or Failed)
comes among the Events, so no start waits for another's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Submit:
    request_id: int
    prompt: object
    options: object  # GenerationOptions or None


@dataclass(frozen=True)
class Cancel:
    request_id: int


@dataclass(frozen=True)
class AskStats:
    request_id: int


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Ready:
    info: object          # ModelInfo
    load_metrics: object  # LoadMetrics
    mode: str


@dataclass(frozen=True)
class LoadFailed:
    error: BaseException


@dataclass(frozen=True)
class Tagged:
    request_id: int
    event: object         # an event of events.py


@dataclass(frozen=True)
class Events:
    tagged: list          # of Tagged, in the order they happened


@dataclass(frozen=True)
class Stats:
    request_id: int
    stats: object         # EngineStats
