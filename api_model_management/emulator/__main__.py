"""``python -m api_model_management.emulator [--host H] [--port P] [--profile FILE]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._cli import emulator_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api_model_management.emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args(argv)
    return emulator_command(args.host, args.port, args.profile)


if __name__ == "__main__":
    sys.exit(main())
