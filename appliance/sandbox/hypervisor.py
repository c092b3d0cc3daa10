"""The one wrapper around the libvirt connection.

Everything that talks to libvirt goes through here, so the rest of the code never sees a
libvirtError: failures become HypervisorUnavailable / SandboxError with a hint. Domains created by
the appliance are transient (they vanish when destroyed) and carry a metadata element naming the
sandbox and the appliance instance that owns them; that tag is how reconcile recognises its own
domains and leaves everyone else's alone.
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from ..errors import HypervisorUnavailable, SandboxError

log = logging.getLogger(__name__)

METADATA_NS = "urn:appliance:sandbox:1"
METADATA_PREFIX = "appliance"

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
