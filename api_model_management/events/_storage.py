"""Where the event log lives: a local directory, or any filesystem pyarrow supports (S3 included).

``data_dir`` takes these forms:

- a path (``./data``, ``/srv/amm``) or ``file:///srv/amm``: the local disk, written with fsync;
- ``s3://bucket/prefix``: Amazon S3 or an S3-compatible store (MinIO, R2, Ceph, ...). Credentials
  and endpoint come from the standard environment variables only: ``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``), ``AWS_ENDPOINT_URL_S3`` or
  ``AWS_ENDPOINT_URL`` (``http://127.0.0.1:9000``), ``AWS_REGION`` or ``AWS_DEFAULT_REGION``
  (``us-east-1`` when an endpoint is given without one). Without keys pyarrow's default AWS chain
  applies (an instance profile, ``~/.aws``). A URI that carries credentials (``s3://key:secret@``
  or ``?secret_key=``) is refused, so that no secret sits in a configuration file, an event or
  a log line;
- any other URI pyarrow opens (``gs://``, ``hdfs://``, ``mock:///`` for tests).

Object stores have no rename, so a file is published by writing its final name in one upload: an
S3 multipart upload becomes visible only when it completes, whole, and :meth:`Storage.publish`
hands it the whole file in one ``write`` (a failed part aborts the completion). Local disks and
other filesystems write a hidden temporary name and rename it into place.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import InvalidInput

_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$")
#: Query keys of a pyarrow URI that would put a credential in the data_dir text.
_SECRET_KEYS = frozenset({"access_key", "secret_key", "session_token", "role_arn", "external_id"})
#: Filesystems where a completed upload is the atomic publish (no rename needed, none available).
_ATOMIC_UPLOAD = tuple(
    cls for cls in (getattr(pafs, "S3FileSystem", None), getattr(pafs, "GcsFileSystem", None))
    if cls is not None
)
#: Bounds on one S3 request, so that an unreachable store fails a call instead of hanging it.
S3_CONNECT_TIMEOUT_S = 5.0
S3_REQUEST_TIMEOUT_S = 60.0


def uri_scheme(data_dir: str | Path) -> str | None:
    """The URI scheme of ``data_dir`` (lower case), or None for a plain path."""
    match = _URI.match(str(data_dir))
    return match["scheme"].lower() if match else None


def is_remote(data_dir: str | Path) -> bool:
    """Whether ``data_dir`` is somewhere other than this machine's disk (any scheme but file)."""
    return uri_scheme(data_dir) not in (None, "file")


def local_path(data_dir: str | Path) -> Path | None:
    """The local directory ``data_dir`` names (a path or ``file://``), or None if it is remote."""
    text = str(data_dir)
    scheme = uri_scheme(text)
    if scheme is None:
        return Path(text)
    if scheme == "file":
        return Path(urlsplit(text).path or "/")
    return None


def display_uri(data_dir: str | Path) -> str:
    """``data_dir`` as messages show it: a URI without credentials or query options."""
    text = str(data_dir)
    if uri_scheme(text) in (None, "file"):
        return text
    parts = urlsplit(text)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{parts.path}"


def local_default_dir(data_dir: str | Path) -> Path:
    """The local directory that stands beside a remote log on this machine:
    ``<system temp dir>/amm-<12 hex of the URI>`` (the same for every process of one host)."""
    digest = hashlib.sha256(display_uri(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"amm-{digest}"


# ------------------------------------------------------------------------------------------------
# opening a filesystem


def open_filesystem(data_dir: str | Path, env: Mapping[str, str] | None = None
                    ) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the root path (inside it) of ``data_dir``; see the module docstring.
    Raises :class:`InvalidInput` (one line, never a credential) when it cannot be opened."""
    text = str(data_dir)
    path = local_path(text)
    if path is not None:
        return pafs.LocalFileSystem(), str(path.absolute())
    _refuse_credentials(text)
    scheme = uri_scheme(text)
    if scheme in ("s3", "s3a"):
        return s3_filesystem(os.environ if env is None else env), _s3_root(text)
    try:
        return pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
        raise InvalidInput(f"cannot open data_dir {display_uri(text)}: {_first_line(exc)}",
                           field="data_dir") from None


def _refuse_credentials(text: str) -> None:
    parts = urlsplit(text)
    query_keys = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if "@" in parts.netloc or query_keys & _SECRET_KEYS:
        raise InvalidInput(
            f"data_dir {display_uri(text)} carries credentials; give them in AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY instead", field="data_dir")


def _s3_root(text: str) -> str:
    parts = urlsplit(text)
    if not parts.netloc:
        raise InvalidInput(f"data_dir {display_uri(text)} names no bucket (s3://bucket/prefix)",
                           field="data_dir")
    if parts.query:
        raise InvalidInput(f"data_dir {display_uri(text)}: options go in AWS_* environment "
                           "variables, not in the URI", field="data_dir")
    return f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")


def s3_filesystem(env: Mapping[str, str]) -> pafs.S3FileSystem:
    """An S3 filesystem configured from the standard AWS environment variables."""
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if bool(key) != bool(secret):
        missing = "AWS_SECRET_ACCESS_KEY" if key else "AWS_ACCESS_KEY_ID"
        raise InvalidInput(f"{missing} is not set (S3 needs both keys, or neither for the "
                           "default AWS credential chain)", field=missing)
    options: dict[str, object] = {"connect_timeout": S3_CONNECT_TIMEOUT_S,
                                  "request_timeout": S3_REQUEST_TIMEOUT_S}
    if key:
        options.update(access_key=key, secret_key=secret,
                       session_token=env.get("AWS_SESSION_TOKEN") or None)
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
            raise InvalidInput("AWS_ENDPOINT_URL must be http(s)://host[:port]",
                               field="AWS_ENDPOINT_URL")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
        region = region or "us-east-1"  # an endpoint without a region: no region lookup
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# ------------------------------------------------------------------------------------------------
# storage: the few file operations the log needs


class Storage:
    """File operations under one root: local (``os``, with fsync) or a pyarrow filesystem."""

    def __init__(self, data_dir: str | Path) -> None:
        text = str(data_dir)
        fs, root = open_filesystem(text)
        self.fs: pafs.FileSystem = fs
        self.root = root.rstrip("/") or "/"
        self.local = isinstance(fs, pafs.LocalFileSystem)
        #: Whether a finished upload is the atomic publish (object stores): no temp, no rename.
        self.atomic_upload = isinstance(fs, _ATOMIC_UPLOAD)
        #: Whether directories are only key prefixes (object stores): nothing to create.
        self.prefix_dirs = isinstance(fs, _ATOMIC_UPLOAD)
        #: ``data_dir`` as messages show it (never a credential).
        self.uri = display_uri(text)

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    # -- listing ---------------------------------------------------------------------------------
    def list_dir(self, path: str) -> list[tuple[str, bool, float]]:
        """``(name, is_dir, mtime_s)`` of the entries of ``path``; ``[]`` if it does not exist."""
        if self.local:
            try:
                with os.scandir(path) as entries:
                    return [(e.name, e.is_dir(), e.stat().st_mtime) for e in entries]
            except FileNotFoundError:
                return []
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return [(i.base_name, i.type == pafs.FileType.Directory, _mtime(i)) for i in infos]

    def list_tree(self, path: str) -> list[tuple[str, int, float]]:
        """``(path relative to path, size, mtime_s)`` of every file under ``path`` (recursively);
        ``[]`` if it does not exist. On an object store this is one paged listing of the prefix
        (1,000 keys a request) instead of one request per directory."""
        prefix = path.rstrip("/") + "/"
        if self.local:
            out = []
            for directory, _, files in os.walk(path):
                for name in files:
                    full = os.path.join(directory, name)
                    try:
                        st = os.stat(full)
                    except FileNotFoundError:
                        continue
                    out.append((full[len(prefix):], st.st_size, st.st_mtime))
            return out
        infos = self.fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        return [(i.path[len(prefix):], i.size or 0, _mtime(i))
                for i in infos if i.type == pafs.FileType.File and i.path.startswith(prefix)]

    def exists(self, path: str) -> bool:
        if self.local:
            return os.path.exists(path)
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def size(self, path: str) -> int:
        if self.local:
            return os.path.getsize(path)
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(path)
        return int(info.size or 0)

    # -- writing ---------------------------------------------------------------------------------
    def makedirs(self, path: str) -> None:
        if self.local:
            os.makedirs(path, exist_ok=True)
        elif not self.prefix_dirs:
            self.fs.create_dir(path, recursive=True)

    def write_new(self, path: str, data: pa.Buffer | bytes, *, fsync: bool) -> None:
        """Write ``data`` to ``path`` (replacing a leftover of the same name), fsync if asked.
        On a filesystem without atomic uploads a failed write may leave part of the file."""
        if not self.local:
            out = self.fs.open_output_stream(path)
            try:
                out.write(data)  # one write: a failed part fails the upload's completion
            finally:
                out.close()
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        if self.local:
            os.replace(src, dst)
        else:
            self.fs.move(src, dst)

    def move_aside(self, src: str, dst: str) -> str:
        """Move ``src`` to ``dst``, or to ``dst.1``, ``dst.2``, ... (never over a file): by rename,
        or where the filesystem cannot rename, by copy then delete. Returns where it went;
        ``FileNotFoundError`` if ``src`` is gone."""
        target, n = dst, 0
        while self.exists(target):
            n += 1
            target = f"{dst}.{n}"
        if self.local:
            os.rename(src, target)
            return target
        if not self.exists(src):
            raise FileNotFoundError(src)
        try:
            self.fs.move(src, target)
        except NotImplementedError:  # pyarrow's ArrowNotImplementedError: no rename here
            self.fs.copy_file(src, target)
            self.fs.delete_file(src)
        return target

    def delete(self, path: str) -> None:
        """Delete a file; a file already gone is fine (deletes are idempotent)."""
        if self.local:
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
        elif self.exists(path):
            try:
                self.fs.delete_file(path)
            except FileNotFoundError:  # deleted by another process since
                return

    def fsync_file(self, path: str) -> None:
        if self.local:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def fsync_dir(self, path: str) -> None:
        if self.local:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # -- reading ---------------------------------------------------------------------------------
    def parquet_file(self, path: str) -> pq.ParquetFile:
        if self.local:
            return pq.ParquetFile(path)
        return pq.ParquetFile(self.fs.open_input_file(path))

    def read_bytes(self, path: str) -> bytes:
        if self.local:
            return Path(path).read_bytes()
        with self.fs.open_input_stream(path) as stream:
            return bytes(stream.readall())


def _mtime(info: pafs.FileInfo) -> float:
    return info.mtime.timestamp() if info.mtime else 0.0


__all__ = ["Storage", "display_uri", "is_remote", "local_default_dir", "local_path",
           "open_filesystem", "s3_filesystem", "uri_scheme"]
