"""A local provider emulator: the OpenAI, Anthropic, Gemini and Ollama wire protocols, with faults.

One uvicorn process serves all four protocols on their real paths over loopback HTTP, with
deterministic answers, usage, rate-limit headers and scripted faults (see :mod:`._profile`).
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
