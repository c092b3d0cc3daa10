"""The one wrapper around the `nft` binary.

Everything the appliance changes in nftables goes through `Nft.apply(script)`, which feeds a
whole script to `nft -f -`: nft runs a script as one transaction, so it applies completely or not
at all. Reading is `nft -j list ...` parsed as JSON. Nothing here knows what the rules mean
(that is netpolicy.ruleset) and nothing here touches tables it is not told to.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess

from appliance_base.errors import ApplianceError

log = logging.getLogger(__name__)


class NftError(ApplianceError):
    """nft refused a script or could not be run."""


class Nft:
    def __init__(self, binary: str = "nft", timeout: float = 30.0):
        self.binary = binary
        self.timeout = timeout

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        exe = shutil.which(self.binary) or self.binary
        try:
            proc = subprocess.run(
                [exe, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except FileNotFoundError as e:
            raise NftError(f"{self.binary} not found", hint="install the nftables package") from e
        except subprocess.TimeoutExpired as e:
            raise NftError(f"nft {' '.join(args)} did not finish within {self.timeout:.0f}s") from e
        if proc.returncode != 0:
            raise NftError(
                f"nft {' '.join(args)} failed: {proc.stderr.strip() or proc.returncode}",
                hint="nftables must be usable as root (kernel nf_tables support)",
            )
        return proc.stdout

    def version(self) -> str:
        return self._run(["--version"]).strip()

    def apply(self, script: str) -> None:
        """Run `script` as one atomic transaction (`nft -f -`)."""
        log.debug("nft -f - <<EOF\n%sEOF", script)
        self._run(["-f", "-"], stdin=script)

    def check(self, script: str) -> None:
        """Parse and validate `script` against the kernel without committing it (`nft -c -f -`)."""
        self._run(["-c", "-f", "-"], stdin=script)

    def list_json(self, *what: str) -> list[dict]:
        """`nft -j list <what...>` as the list of objects under "nftables" (metainfo dropped)."""
        out = self._run(["-j", "list", *what])
        items = json.loads(out).get("nftables", []) if out.strip() else []
        return [i for i in items if "metainfo" not in i]

    def list_table(self, family: str, name: str) -> list[dict] | None:
        """The table's objects as JSON, or None if it does not exist."""
        if not self.table_exists(family, name):
            return None
        return self.list_json("table", family, name)

    def list_text(self, family: str, name: str) -> str:
        return self._run(["list", "table", family, name])

    def tables(self) -> list[tuple[str, str]]:
        return [(t["table"]["family"], t["table"]["name"]) for t in self.list_json("tables") if "table" in t]

    def table_exists(self, family: str, name: str) -> bool:
        return (family, name) in self.tables()

    def set_elements(self, family: str, table: str, set_name: str) -> list:
        """The elements of one set, as nft's JSON gives them (strings, or concat lists)."""
        for item in self.list_json("set", family, table, set_name):
            if "set" in item:
                return [
                    e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
                    for e in item["set"].get("elem", [])
                ]
        return []
