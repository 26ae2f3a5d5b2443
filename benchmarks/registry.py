"""Every scenario `ovchat bench` runs, in the order it runs them: this list is the registry.

Adding a scenario: a module with its `Scenario(...)` (benchmarks/scenarios.py says what one is),
and one entry here."""

from __future__ import annotations

from .agent_loop_scenario import AGENT_LOOP
from .coldstart_scenario import COLDSTART
from .messages_scenario import MESSAGES
from .models_scenario import MODELS
from .scenarios import CHAT, CONCURRENCY, LATENCY, LOAD, MEMORY
from .remember_scenario import REMEMBER
from .server_scenario import SERVER
from .starts_scenario import STARTS

SCENARIOS = {scenario.name: scenario for scenario in (LATENCY, CHAT, LOAD, MEMORY, CONCURRENCY, COLDSTART, SERVER,
                                                           STARTS, MESSAGES, REMEMBER, MODELS, AGENT_LOOP)}
