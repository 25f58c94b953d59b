"""``amm serve`` (standalone, ``--ray`` or ``--ray-serve``) in a subprocess for the gateway tests,
its output collected line by line; ready when it logs the address it listens on."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

_ENTRY = "import sys; from api_model_management.cli import main; sys.argv[0] = 'amm'; main()"
_READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class ServeProcess:
    """``amm serve ARGS`` with ``env``; raises ``RuntimeError`` (with its output) when it has not
    said where it listens within ``start_timeout_s``."""

    def __init__(self, args: list[str], env: dict[str, str], *, start_timeout_s: float = 90.0
                 ) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _ENTRY, "serve", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.base_url: str | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(start_timeout_s) or self.base_url is None:
            self.stop()
            raise RuntimeError(f"amm serve {' '.join(args[:1])} did not start:\n" + self.output)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            found = _READY.search(line)
            if found:
                self.base_url = found.group(1)
                self._ready.set()
        self._ready.set()

    @property
    def output(self) -> str:
        """Everything it printed so far."""
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 120.0) -> int:
        """Send ``sig`` (to this process only) and wait for its exit code; killed (exit code
        -9) if it has not exited within ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)
        finally:
            self._reader.join(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
