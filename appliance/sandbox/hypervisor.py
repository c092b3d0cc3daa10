"""The one wrapper around the libvirt connection.

Everything that talks to libvirt goes through here, so the rest of the code never sees a
libvirtError: failures become HypervisorUnavailable / SandboxError with a hint. Domains created by
the appliance are transient (they vanish when destroyed) and carry a metadata element naming the
sandbox and the appliance instance that owns them; that tag is how reconcile recognises its own
domains and leaves everyone else's alone.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import libvirt
import libvirt_qemu

from ..errors import HypervisorUnavailable, SandboxError

log = logging.getLogger(__name__)

METADATA_NS = "urn:appliance:sandbox:1"
METADATA_PREFIX = "appliance"

# A libvirt save file: a header of 92 bytes, whose uint32 at byte 20 is the length of the domain XML
# that follows it; QEMU's migration stream starts after both (verified with libvirt 9.0).
SAVE_HEADER_SIZE = 92
SAVE_XML_LENGTH_AT = 20
IGNORE_SHARED = {"capabilities": [{"capability": "x-ignore-shared", "state": True}]}

# libvirt prints every error to stderr unless a handler is installed; we report errors ourselves.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_START_HINT = "start libvirtd (systemctl start libvirtd, or 'virtlogd -d && libvirtd -d' without systemd)"


@dataclass(frozen=True)
class DomainTag:
    """What our metadata element says about a domain."""

    name: str
    sandbox_id: str
    instance: str
    active: bool


class Hypervisor:
    def __init__(self, uri: str):
        self.uri = uri
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()

    # -- connection -------------------------------------------------------------------------
    @property
    def conn(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is not None:
                # isAlive() stays true on a socket libvirtd closed by restarting; a real (cheap) call
                # tells, and a restarted libvirtd then gets a new connection instead of broken pipes.
                try:
                    self._conn.getLibVersion()
                    return self._conn
                except libvirt.libvirtError:
                    try:
                        self._conn.close()
                    except libvirt.libvirtError:
                        pass
                self._conn = None
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as e:
                raise HypervisorUnavailable(f"cannot connect to libvirt at {self.uri}: {e.get_error_message()}", hint=_START_HINT) from e
            return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except libvirt.libvirtError:
                    pass
                self._conn = None

    def versions(self) -> dict[str, str]:
        def fmt(v: int) -> str:
            return f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"

        return {"libvirt": fmt(self.conn.getLibVersion()), "hypervisor": fmt(self.conn.getVersion())}

    def supports_domain_type(self, domain_type: str) -> bool:
        caps = ET.fromstring(self.conn.getCapabilities())
        return any(d.get("type") == domain_type for d in caps.iter("domain"))

    # -- domains ----------------------------------------------------------------------------
    def start(self, xml: str) -> str:
        """Create and start a transient domain from XML; returns its name."""
        try:
            dom = self.conn.createXML(xml, 0)
        except libvirt.libvirtError as e:
            raise SandboxError(f"libvirt refused to start the guest: {e.get_error_message()}",
                               hint="see 'appliance doctor' and the libvirt log (/var/log/libvirt/qemu/)") from e
        return dom.name()

    def _lookup(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise HypervisorUnavailable(f"libvirt lookup of {name} failed: {e.get_error_message()}", hint=_START_HINT) from e

    def exists(self, name: str) -> bool:
        return self._lookup(name) is not None

    def is_running(self, name: str) -> bool:
        dom = self._lookup(name)
        try:
            return dom is not None and bool(dom.isActive())
        except libvirt.libvirtError:
            return False

    def destroy(self, name: str) -> bool:
        """Stop and remove a domain. Returns False if there was nothing to remove."""
        dom = self._lookup(name)
        if dom is None:
            return False
        try:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return True  # it went away while we were at it
            raise SandboxError(f"could not destroy domain {name}: {e.get_error_message()}", hint=_START_HINT) from e
        return True

    def qemu_pid(self, name: str) -> int | None:
        """PID of the domain's qemu process (from libvirt's pid file), for resource measurements."""
        path = f"/run/libvirt/qemu/{name}.pid"
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def tagged_domains(self) -> list[DomainTag]:
        """Every domain (running or defined) that carries our metadata element."""
        tags = []
        for dom in self.conn.listAllDomains(0):
            try:
                raw = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, 0)
            except libvirt.libvirtError:
                continue  # no element in our namespace: not ours
            el = ET.fromstring(raw)
            try:
                active = bool(dom.isActive())
            except libvirt.libvirtError:
                continue
            tags.append(DomainTag(dom.name(), el.get("id", ""), el.get("instance", ""), active))
        return tags

    # -- templates: many guests from one saved state (docs/ARCHITECTURE.md, "How a guest comes to be")
    def monitor(self, name: str, command: str, arguments: dict | None = None) -> dict:
        """One QMP command to the domain's QEMU; its `return` value."""
        dom = self._domain(name)
        request = {"execute": command, **({"arguments": arguments} if arguments else {})}
        try:
            reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps(request), 0))
        except libvirt.libvirtError as e:
            raise SandboxError(f"QEMU of {name} refused {command}: {e.get_error_message()}") from e
        if "error" in reply:
            raise SandboxError(f"QEMU of {name} refused {command}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return", {})

    def save_template(self, name: str, state_file: Path) -> None:
        """Save a running guest whose RAM lives in a shared file: only the device state goes into
        `state_file` (x-ignore-shared); the domain is gone afterwards, its RAM file stays."""
        self.monitor(name, "migrate-set-capabilities", IGNORE_SHARED)
        try:
            self._domain(name).save(str(state_file))
        except libvirt.libvirtError as e:
            raise SandboxError(f"could not save the template guest {name}: {e.get_error_message()}") from e

    def start_clone(self, xml: str, state_file: Path, timeout: float = 60.0) -> str:
        """Start a new domain (`xml`: its own name, MAC, tap, disk; the template's RAM file, private)
        from a template's saved state, and resume it; returns its name. QEMU 7.2 has no command-line
        switch for x-ignore-shared, so the state comes in over QMP: paused start with
        `-incoming defer`, the capability, the state file's stream passed as an fd, migrate-incoming."""
        try:
            dom = self.conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as e:
            raise SandboxError(f"libvirt refused to start the clone: {e.get_error_message()}",
                               hint="see 'appliance doctor' and the libvirt log (/var/log/libvirt/qemu/)") from e
        name = dom.name()
        try:
            self.monitor(name, "migrate-set-capabilities", IGNORE_SHARED)
            with open(state_file, "rb") as f:
                header = f.read(SAVE_HEADER_SIZE)
                if len(header) < SAVE_HEADER_SIZE:
                    raise SandboxError(f"template state {state_file} is truncated")
                (xml_length,) = struct.unpack_from("<I", header, SAVE_XML_LENGTH_AT)
                os.lseek(f.fileno(), SAVE_HEADER_SIZE + xml_length, os.SEEK_SET)
                getfd = json.dumps({"execute": "getfd", "arguments": {"fdname": "incoming"}})
                libvirt_qemu.qemuMonitorCommandWithFiles(dom, getfd, [f.fileno()], 0)
            self.monitor(name, "migrate-incoming", {"uri": "fd:incoming"})
            deadline = time.monotonic() + timeout
            while True:
                status = self.monitor(name, "query-migrate").get("status")
                if status == "completed":
                    break
                if status in ("failed", "cancelled") or time.monotonic() > deadline:
                    raise SandboxError(f"loading the template state into {name} ended {status or 'timed out'}",
                                       hint="the template is rebuilt at the next start; guests cold-boot meanwhile")
                time.sleep(0.05)
            dom.resume()
        except BaseException:
            self.destroy(name)
            raise
        return name

    def agent_exec(self, name: str, argv: list[str], timeout: float = 60.0) -> tuple[int, str, str]:
        """Run a command in the guest through its QEMU guest agent: (exit code, stdout, stderr)."""
        dom = self._domain(name)
        request = {"execute": "guest-exec", "arguments": {"path": argv[0], "arg": argv[1:], "capture-output": True}}
        try:
            pid = json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(request), int(timeout), 0))["return"]["pid"]
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                status = json.loads(libvirt_qemu.qemuAgentCommand(
                    dom, json.dumps({"execute": "guest-exec-status", "arguments": {"pid": pid}}), 10, 0))["return"]
                if status.get("exited"):
                    out = base64.b64decode(status.get("out-data", "")).decode(errors="replace")
                    err = base64.b64decode(status.get("err-data", "")).decode(errors="replace")
                    return int(status.get("exitcode", -1)), out, err
                time.sleep(0.05)
        except libvirt.libvirtError as e:
            raise SandboxError(f"the guest agent of {name} did not answer: {e.get_error_message()}") from e
        raise SandboxError(f"{argv[0]} in {name} did not finish within {timeout:.0f} s")

    def agent_ready(self, name: str) -> bool:
        try:
            libvirt_qemu.qemuAgentCommand(self._domain(name), '{"execute": "guest-ping"}', 2, 0)
            return True
        except (libvirt.libvirtError, SandboxError):
            return False

    def set_guest_time(self, name: str) -> None:
        """The guest's clock to now (a clone's clock lags by the time its template was saved)."""
        now = time.time()
        try:
            self._domain(name).setTime({"seconds": int(now), "nseconds": int((now % 1) * 1e9)}, 0)
        except libvirt.libvirtError as e:
            raise SandboxError(f"could not set the clock of {name}: {e.get_error_message()}") from e

    def pause(self, name: str) -> None:
        """Stop the guest's vCPUs (a waiting pool slot: no CPU, its memory stays)."""
        self._on_domain(name, "pause", lambda dom: dom.suspend())

    def resume(self, name: str) -> None:
        self._on_domain(name, "resume", lambda dom: dom.resume())

    def freeze_filesystems(self, name: str) -> None:
        """Flush and freeze the guest's file systems (guest agent): its disk is consistent until thawed."""
        self._on_domain(name, "freeze the file systems of", lambda dom: dom.fsFreeze())

    def thaw_filesystems(self, name: str) -> None:
        self._on_domain(name, "thaw the file systems of", lambda dom: dom.fsThaw())

    def _on_domain(self, name: str, what: str, action) -> None:
        try:
            action(self._domain(name))
        except libvirt.libvirtError as e:
            raise SandboxError(f"could not {what} {name}: {e.get_error_message()}") from e

    def is_paused(self, name: str) -> bool:
        dom = self._lookup(name)
        try:
            return dom is not None and dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        except libvirt.libvirtError:
            return False

    def _domain(self, name: str) -> libvirt.virDomain:
        dom = self._lookup(name)
        if dom is None:
            raise SandboxError(f"no domain {name}")
        return dom
