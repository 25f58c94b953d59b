"""A local provider emulator: the OpenAI, Anthropic, Gemini and Ollama wire protocols, with faults.

One uvicorn process serves all four protocols on their real paths over loopback HTTP, with
deterministic answers, usage, rate-limit headers and scripted faults (see :mod:`._profile`).
Agent requests too (see :mod:`._shape`): given tools it answers with a tool call whose arguments
are generated from the tool's JSON Schema (text once the last message is a tool result); given a
JSON schema (or JSON mode) a conforming object; images are accepted and counted in input tokens
by each provider's rule (:mod:`._images`) and in the statistics. Requests are validated as the
APIs validate them (tool results paired with calls, strict schemas, image formats).
Tests use :class:`api_model_management.emulator.testing.EmulatorServer`; ``amm emulator`` runs
it in the foreground.
"""

from ._app import EmulatorApp, create_app
from ._engine import FAULT_HEADER, Engine
from ._profile import FaultSpec, Profile, ProfileError, load_profile, parse_profile

__all__ = [
    "FAULT_HEADER",
    "EmulatorApp",
    "Engine",
    "FaultSpec",
    "Profile",
    "ProfileError",
    "create_app",
    "load_profile",
    "parse_profile",
]
