"""An S3-compatible server on loopback for the benchmarks: moto's server in its own process.

    with loopback_s3() as uri:      # s3://amm-bench/<random prefix>, AWS_* set in os.environ
        EventLog(uri).append(...)

moto is a Python server: every request costs it a few milliseconds of CPU on this machine, which
a real object store does not charge its client. Figures measured against it are what this client
does with a slow store next to it on the same two cores, not what S3 or MinIO would give.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.fs as pafs
from _common import free_port

BUCKET = "amm-bench"
_KEY, _SECRET = "AKIDBENCHLOOPBACK", "bench-loopback-secret"


@contextmanager
def loopback_s3() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_EC2_METADATA_DISABLED")}
    os.environ.update(AWS_ACCESS_KEY_ID=_KEY, AWS_SECRET_ACCESS_KEY=_SECRET,
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_REGION="us-east-1",
                      AWS_EC2_METADATA_DISABLED="true")
    try:
        admin = pafs.S3FileSystem(access_key=_KEY, secret_key=_SECRET, scheme="http",
                                  endpoint_override=f"127.0.0.1:{port}", region="us-east-1",
                                  allow_bucket_creation=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                admin.create_dir(BUCKET)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
