"""Writing settings into the configuration file (`appliance worker --join` records what control
issued). A line edit, not a rewrite: the file's other settings and its comments stay as they are;
the result is parsed again before it replaces the file, so a file this cannot edit safely is left
untouched with a clear error."""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from pathlib import Path

from .config import DEFAULTS, read_file
from .errors import ConfigError

_SECTION = re.compile(r"^\s*\[([A-Za-z0-9_.-]+)\]\s*(#.*)?$")


def section_of(key: str) -> str:
    for section, settings in DEFAULTS.items():
        if key in settings:
            return section
    raise ConfigError(f"unknown setting '{key}'")


def read_settings(path: Path) -> dict[str, object]:
    """The settings the file names (flat, checked as `load` checks them), {} when there is no file."""
    return read_file(path)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def _edit(text: str, section: str, key: str, value: object) -> str:
    lines = text.splitlines()
    line = f"{key} = {_toml_value(value)}"
    current, header_at = None, None
    for i, raw in enumerate(lines):
        m = _SECTION.match(raw)
        if m:
            current = m.group(1)
            if current == section:
                header_at = i
            continue
        if current == section and re.match(rf"^\s*{re.escape(key)}\s*=", raw):
            lines[i] = line
            return "\n".join(lines) + "\n"
    if header_at is not None:
        lines.insert(header_at + 1, line)
    else:
        lines += ([""] if lines and lines[-1].strip() else []) + [f"[{section}]", line]
    return "\n".join(lines) + "\n"


def update_settings(path: Path, settings: dict[str, object]) -> None:
    """Set `settings` (flat names) in the file at `path`, creating it 0600 if there is none. An
    existing file keeps its owner and mode, less any access for others (it may now hold a password)."""
    path = Path(path)
    try:
        text, st = path.read_text(), path.stat()
    except FileNotFoundError:
        text, st = "", None
    for key, value in settings.items():
        text = _edit(text, section_of(key), key, value)
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: could not add {', '.join(settings)} safely ({e}); the file is unchanged",
                          hint=f"set them by hand: {', '.join(f'{k} = {_toml_value(v)}' for k, v in settings.items())}") from e
    for key, value in settings.items():
        if parsed.get(section_of(key), {}).get(key) != value:
            raise ConfigError(f"{path}: could not set {key} safely; the file is unchanged",
                              hint=f"set it by hand in [{section_of(key)}]: {key} = {_toml_value(value)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o770)
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
