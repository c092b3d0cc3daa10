"""The model API credentials file: `{host: {header: value}}` the egress proxy injects.

The guest only holds a placeholder; the proxy adds the real header for the host (e.g. `x-api-key`
for `api.anthropic.com`). The file is TOML, mode 0600, owned by the proxy's user:

```toml
["api.anthropic.com"]
x-api-key = "sk-ant-..."
```
The proxy addon reads it (`load_credentials`), the daemon asks it before a session starts
(`EgressPolicy.has_credential`), and the console's admin page rewrites it (`write_credentials`).
Values are never logged.
"""

from __future__ import annotations

import os
import stat
import tempfile
import tomllib
from pathlib import Path

from .allowlist import PolicyError, ip_literal, normalize_host

_HEADER_NAME = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def load_credentials(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """`{host: {header: value}}` from a TOML file that only its owner may read; a missing file
    means no credentials. ValueError says what is wrong with a bad one."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return {}
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"{p} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    if st.st_uid != os.geteuid():
        raise ValueError(f"{p} is not owned by the proxy's user (uid {os.geteuid()})")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML: {e}") from e
    out: dict[str, dict[str, str]] = {}
    for host, headers in data.items():
        try:
            h = normalize_host(host)
        except PolicyError as e:
            raise ValueError(f"{p}: {host!r} is not a host name") from e
        if ip_literal(h) is not None or not isinstance(headers, dict) or not headers:
            raise ValueError(f"{p}: [{host}] must be a host name with a table of header = value")
        for name, value in headers.items():
            if not name or set(name) - _HEADER_NAME or not isinstance(value, str) or "\n" in value or "\r" in value:
                raise ValueError(f"{p}: [{host}] has an invalid header entry {name!r}")
        out[h] = dict(headers)
    return out




def _toml_string(value: str) -> str:
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(c) < 32 for c in out):
        raise ValueError("a credential cannot contain control characters or line breaks")
    return f'"{out}"'


def write_credentials(path: str | os.PathLike, creds: dict[str, dict[str, str]]) -> None:
    """The whole file, replaced atomically, created 0600 (the proxy refuses anything more open)."""
    path = Path(path)
    lines = []
    for host in sorted(creds):
        lines.append(f"[{_toml_string(host)}]")
        lines += [f"{_toml_string(h)} = {_toml_string(v)}" for h, v in sorted(creds[host].items())]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CredentialsFile:
    """The file at `path`, for callers that read and rewrite it whole (the console's admin page)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, str]]:
        return load_credentials(self.path)

    def write(self, creds: dict[str, dict[str, str]]) -> None:
        write_credentials(self.path, creds)
