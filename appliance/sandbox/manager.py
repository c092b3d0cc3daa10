"""Sandbox lifecycle: create → ready → exec → destroy, and reconcile after a crash.

Every step that makes something (row, address, tap, files, domain) is undone if a later step
fails, so a failed create leaves nothing but a `failed` row saying why. State changes are written
to the database before the thing they describe is torn down, so a crash in the middle is always
repairable by `reconcile()`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import peewee

from appliance_base.config import Config
from netpolicy.allowlist import Policy
from netpolicy.service import EgressPolicy

from ..db import utcnow
from ..errors import ApplianceError, NotFound, NotReady, ResourceExhausted, SandboxError
from ..guest_limits import GuestLimits
from ..models import Sandbox, SandboxState, on_host
from . import accel, disks
from .domain_xml import FW_CFG_IDENTITY, DomainSpec, render
from .guest_ssh import GuestSSH, port_open
from .hypervisor import Hypervisor
from .identity import GuestIdentity, generate_keypair, write_private
from .pool import SlotShape, WarmPool
from .templates import TemplateStore

log = logging.getLogger(__name__)
KERNEL_PANIC = "Kernel panic - not syncing"
TEMPLATE_RETRY_AFTER = 600  # seconds of cold boots after a template could not be made

CONSOLE_TAIL_LINES = 40


@dataclass(frozen=True)
class SandboxRequest:
    profile: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    disk_gb: int | None = None
    purpose: str = "admin"  # "admin" or "session"
    session_id: str | None = None  # the session it runs
    network: Policy | None = None  # None: the default level (limited)
    env_cache: tuple[int, Path] | None = None  # (id, disk): start from an environment cache's disk


@dataclass(frozen=True)
class SandboxFiles:
    """Where a sandbox's host-side files live."""

    dir: Path

    @property
    def overlay(self) -> Path:
        return self.dir / "disk.qcow2"

    @property
    def client_key(self) -> Path:
        return self.dir / "client_key"

    @property
    def host_key_pub(self) -> Path:
        return self.dir / "host_key.pub"

    @property
    def identity(self) -> Path:
        return self.dir / "identity.json"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    def console_tail(self, lines: int = CONSOLE_TAIL_LINES) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console output)"
        return "\n".join(text.splitlines()[-lines:])


class SandboxManager:
    def __init__(self, config: Config, hypervisor: Hypervisor, egress: EgressPolicy | None = None):
        self.config = config
        self.hv = hypervisor
        # Every guest is policed: there is no manager without an egress layer.
        self.egress = egress if egress is not None else EgressPolicy(config)
        self._accel: accel.AccelChoice | None = None
        self._template_lock = threading.Lock()  # one template build at a time
        self._templates_off_until = 0.0  # after a failed build: cold boots for a while, then try again
        self.pool = WarmPool(self)

    # -- identity of this appliance ---------------------------------------------------------
    @property
    def instance(self) -> str:
        """A token naming this appliance installation; its domains carry it (see reconcile)."""
        path = self.config.state_dir / "instance-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            self.config.state_dir.mkdir(parents=True, exist_ok=True)
            token = secrets.token_hex(8)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(token + "\n")
            try:
                os.link(tmp, path)  # first writer wins if two processes race
            except FileExistsError:
                pass
            tmp.unlink()
            return path.read_text().strip()

    def files(self, sandbox: Sandbox | str) -> SandboxFiles:
        sandbox_id = sandbox if isinstance(sandbox, str) else sandbox.id
        return SandboxFiles(self.config.sandbox_dir / sandbox_id)

    def image_store(self):
        from vmimages.store import ImageStore

        return ImageStore(self.config.image_dir)

    def accel(self, kernel: Path | None = None) -> accel.AccelChoice:
        if self._accel is None:
            if kernel is None:
                try:
                    kernel = self.image_store().get(self.config.default_profile).kernel
                except ApplianceError:
                    kernel = None
            self._accel = accel.choose(self.config.accel, self.hv, kernel, self.config.state_dir,
                                       self.config.accel_probe_timeout)
        return self._accel

    # -- queries ----------------------------------------------------------------------------
    def get(self, sandbox_id: str) -> Sandbox:
        try:
            return Sandbox.get_by_id(sandbox_id)
        except Sandbox.DoesNotExist:
            raise NotFound(f"no sandbox {sandbox_id}", hint="see 'appliance sandbox list'") from None

    def get_live(self, sandbox_id: str) -> Sandbox:
        sandbox = self.get(sandbox_id)
        if sandbox.state != SandboxState.RUNNING:
            raise SandboxError(f"sandbox {sandbox_id} is {sandbox.state}, not running",
                               hint="create a new one with 'appliance sandbox create'")
        return sandbox

    def list(self, include_ended: bool = False) -> list[Sandbox]:
        query = Sandbox.select().order_by(Sandbox.created_at.desc())
        if not include_ended:
            query = query.where(Sandbox.state.in_(SandboxState.LIVE))
        return list(query)

    # -- create -----------------------------------------------------------------------------
    def create(self, request: SandboxRequest = SandboxRequest(), wait: bool = True) -> Sandbox:
        cfg = self.config
        GuestLimits.from_config(cfg).check(vcpus=request.vcpus, memory_mb=request.memory_mb, disk_gb=request.disk_gb)
        profile = request.profile or cfg.default_profile
        image = self.image_store().get(profile)
        if request.env_cache is not None:  # the cache's disk stands in for the image's (templates keyed apart)
            cache_id, cache_disk = request.env_cache
            image = replace(image, disk=cache_disk, profile_hash=f"{image.profile_hash}+env{cache_id}")
        self.hv.versions()  # libvirtd down is reported before anything is made
        cfg.sandbox_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.sandbox_dir, 0o711)  # qemu (libvirt-qemu) must traverse to the overlay
        disks.ensure_traversable(cfg.sandbox_dir)
        disks.ensure_traversable(image.dir)
        disks.ensure_free_space(cfg.sandbox_dir, cfg.min_free_disk_mb)
        choice = self.accel(image.kernel)
        self.egress.ensure_bridge()
        self.egress.prepare_for_guests()
        policy = request.network or Policy.make()

        if not request.disk_gb:  # the default disk never ends smaller than the image's own file system
            request = replace(request, disk_gb=max(cfg.disk_gb, int(image.manifest.get("disk_size_gib") or 0)))
        if request.purpose == "session" and request.env_cache is None:
            shape = SlotShape(profile, str(image.dir), request.vcpus or cfg.vcpus, request.memory_mb or cfg.memory_mb,
                              request.disk_gb)
            claimed = self.pool.claim(shape, request.session_id, policy)
            if claimed is not None:
                return claimed
        sandbox = self._insert_row(request, profile, str(image.dir), choice.mode, policy)
        log.info("creating sandbox %s (%s, %s, %s)", sandbox.id, profile, sandbox.address, choice.mode)
        try:
            self._provision(sandbox, image, choice)
            if wait:
                self.wait_ready(sandbox)
        except BaseException as e:  # also KeyboardInterrupt: nothing may be left behind
            self._teardown(sandbox)
            reason = e.message if isinstance(e, ApplianceError) else f"{type(e).__name__}: {e}"
            Sandbox.update(state=SandboxState.FAILED, error=reason, ended_at=utcnow()).where(
                Sandbox.id == sandbox.id).execute()
            if isinstance(e, OSError) and e.errno == 28:
                raise ResourceExhausted(f"disk full while creating sandbox {sandbox.id}",
                                        hint="free disk space and try again") from e
            raise
        return self.get(sandbox.id)

    def _insert_row(self, request: SandboxRequest, profile: str, image_dir: str, mode: str,
                    policy: Policy | None = None) -> Sandbox:
        """Insert the row with a free address and tap name; the partial unique indexes settle races."""
        cfg = self.config
        for _attempt in range(20):
            taken = {s.address for s in Sandbox.select(Sandbox.address).where(Sandbox.state.in_(SandboxState.LIVE))}
            address = next((str(a) for a in cfg.network.hosts() if a != cfg.bridge_address and str(a) not in taken), None)
            if address is None:
                raise ResourceExhausted(f"no free address left in {cfg.network}",
                                        hint="destroy sandboxes or configure a larger subnet")
            sandbox = Sandbox(
                profile=profile, image_dir=image_dir, env_cache_id=request.env_cache and request.env_cache[0], vcpus=request.vcpus or cfg.vcpus,
                memory_mb=request.memory_mb or cfg.memory_mb, disk_gb=request.disk_gb or cfg.disk_gb,
                address=address, accel=mode, purpose=request.purpose, session_id=request.session_id,
                host=cfg.appliance_host,
                network_policy=(policy or Policy.make("none")).to_dict(),
            )
            sandbox.tap = cfg.tap_prefix + sandbox.id.removeprefix("sb-")
            try:
                sandbox.save(force_insert=True)
                return sandbox
            except peewee.IntegrityError:
                continue  # someone took that address between our read and our insert
        raise SandboxError("could not allocate an address after 20 tries", hint="try again")

    def _provision(self, sandbox: Sandbox, image, choice: accel.AccelChoice) -> None:
        cfg = self.config
        files = self.files(sandbox)
        files.dir.mkdir(mode=0o711)
        client = generate_keypair(f"appliance-{sandbox.id}")
        host = generate_keypair(sandbox.id)
        write_private(files.client_key, client.private_openssh)
        files.host_key_pub.write_text(host.public_openssh + "\n")
        # The policy is in place before the guest's first packet: frames from a tap with no
        # policy are dropped at the bridge anyway, and the proxy and resolver deny its address.
        self.egress.attach(sandbox.id, sandbox.address, sandbox.tap, Policy.from_dict(sandbox.network_policy),
                           session_id=sandbox.session_id, mac=sandbox.mac)
        guest_net = self.egress.guest_settings(sandbox.address)
        identity = GuestIdentity(
            hostname=sandbox.id, user=cfg.guest_user, authorized_keys=[client.public_openssh],
            host_key=host.private_openssh,
            address=f"{sandbox.address}/{cfg.network.prefixlen}", gateway=str(cfg.bridge_address),
            dns=guest_net["dns"], proxy=guest_net["proxy"], ca_certs=guest_net["ca_certs"],
        )
        write_private(files.identity, identity.to_blob())
        # qemu runs as libvirt-qemu and reads fw_cfg files itself; nobody else may read the host key.
        shutil.chown(files.identity, user="libvirt-qemu")
        self.egress.create_tap(sandbox.tap, sandbox.mac)
        spec = DomainSpec(
            name=sandbox.domain_name, sandbox_id=sandbox.id, instance=self.instance,
            domain_type=choice.domain_type, vcpus=sandbox.vcpus, memory_mb=sandbox.memory_mb,
            kernel=str(image.kernel), initrd=str(image.initrd), cmdline=image.kernel_cmdline,
            serial_log=str(files.console_log), disk=str(files.overlay), tap=sandbox.tap,
            mac=sandbox.mac, fw_cfg={FW_CFG_IDENTITY: str(files.identity)},
        )
        template = self._template(sandbox, image, choice) if self.config.templated else None
        if template is not None:
            # named before the overlay exists: from here on sweep keeps the disk it is backed by
            Sandbox.update(template_key=template.name).where(Sandbox.id == sandbox.id).execute()
            disks.create_overlay(template.disk, files.overlay, sandbox.disk_gb)
            store = self.templates()
            try:
                store.start_clone(template, store.clone_spec(spec, template))
                log.info("sandbox %s started from template %s", sandbox.id, template.name)
                return
            except ApplianceError as e:  # this guest cold-boots; the template is made again next time
                log.warning("sandbox %s: starting from template %s failed (%s); cold boot", sandbox.id,
                            template.name, e.message)
                store.retire(template, f"a clone could not start from it: {e.message}")
                files.overlay.unlink(missing_ok=True)
                Sandbox.update(template_key=None).where(Sandbox.id == sandbox.id).execute()
        disks.create_overlay(image.disk, files.overlay, sandbox.disk_gb)
        self.hv.start(render(spec))

    # -- templates --------------------------------------------------------------------------
    def templates(self) -> TemplateStore:
        return TemplateStore(self.config, self.hv, self.egress, self.instance)

    def _template(self, sandbox: Sandbox, image, choice: accel.AccelChoice):
        """The template this sandbox can start from (made now if missing), or None: cold boot."""
        if time.monotonic() < self._templates_off_until:
            return None
        store = self.templates()
        key = store.key(image, choice.domain_type, sandbox.vcpus, sandbox.memory_mb, sandbox.disk_gb)
        with self._template_lock:
            found = store.find(key)
            if found is not None:
                return found
            try:
                return store.build(key, image)
            except (ApplianceError, OSError) as e:
                self._templates_off_until = time.monotonic() + TEMPLATE_RETRY_AFTER
                reason = e.message if isinstance(e, ApplianceError) else str(e)
                log.warning("guest templates do not work on this host (%s): guests cold-boot; trying again in %d s",
                            reason, TEMPLATE_RETRY_AFTER)
                return None

    def ssh(self, sandbox: Sandbox) -> GuestSSH:
        files = self.files(sandbox)
        return GuestSSH(sandbox.address, self.config.guest_user, files.client_key.read_text(),
                        files.host_key_pub.read_text(), max_output=self.config.guest_output_max_kb * 1024)

    def wait_ready(self, sandbox: Sandbox, timeout: float | None = None) -> None:
        """Ready = SSH answers with the sandbox key and runs a command."""
        timeout = self.config.ready_timeout if timeout is None else timeout
        if self.get(sandbox.id).state == SandboxState.RUNNING:
            return  # answered SSH already (a warm pool slot claimed: it did before it was paused)
        files = self.files(sandbox)
        started = time.monotonic()
        last_error = "SSH port never opened"
        while time.monotonic() - started < timeout:
            if not self.hv.is_running(sandbox.domain_name):
                raise NotReady(f"sandbox {sandbox.id} stopped while booting; console:\n{files.console_tail()}",
                               hint="check the image with 'appliance image list' or rebuild it")
            if KERNEL_PANIC in files.console_tail():  # a panicked guest never answers: say so now
                raise NotReady(f"sandbox {sandbox.id}: the guest kernel panicked while booting; console:\n"
                               f"{files.console_tail()}", hint="try again; if it repeats, rebuild the image")
            if port_open(sandbox.address, 22):
                try:
                    with self.ssh(sandbox) as guest:
                        if guest.exec("true", timeout=30).exit_code == 0:
                            Sandbox.update(state=SandboxState.RUNNING, ready_at=utcnow()).where(
                                Sandbox.id == sandbox.id, Sandbox.state == SandboxState.CREATING).execute()
                            log.info("sandbox %s ready in %.1f s", sandbox.id, time.monotonic() - started)
                            return
                except Exception as e:  # sshd still starting: keys not written yet, banner timeout...
                    last_error = f"{type(e).__name__}: {e}"
            time.sleep(0.5)
        raise NotReady(
            f"sandbox {sandbox.id} did not answer SSH within {timeout:.0f} s ({last_error}); console:\n{files.console_tail()}",
            hint="raise ready_timeout if the host is slow, or run 'appliance doctor'",
        )

    # -- destroy ----------------------------------------------------------------------------
    def destroy(self, sandbox_id: str) -> Sandbox:
        sandbox = self.get(sandbox_id)
        if sandbox.state in SandboxState.ENDED:
            raise SandboxError(f"sandbox {sandbox_id} is already {sandbox.state}", hint="nothing to do")
        Sandbox.update(state=SandboxState.DESTROYING).where(Sandbox.id == sandbox.id).execute()
        self._finish_destroy(sandbox)
        return self.get(sandbox.id)

    def _finish_destroy(self, sandbox: Sandbox) -> None:
        self._teardown(sandbox)
        Sandbox.update(state=SandboxState.DESTROYED, ended_at=utcnow()).where(Sandbox.id == sandbox.id).execute()
        log.info("destroyed sandbox %s", sandbox.id)

    def _teardown(self, sandbox: Sandbox) -> None:
        """Remove the domain, the tap and the files. Idempotent; each step runs even if another fails."""
        errors = []
        for step in (lambda: self.hv.destroy(sandbox.domain_name),
                     lambda: self.egress.detach(sandbox.id),
                     lambda: sandbox.tap and self.egress.delete_tap(sandbox.tap),
                     lambda: shutil.rmtree(self.files(sandbox).dir, ignore_errors=False)
                     if self.files(sandbox).dir.exists() else None):
            try:
                step()
            except Exception as e:  # keep going: a leak in one place must not cause leaks in others
                errors.append(f"{type(e).__name__}: {e}")
        if errors:
            raise SandboxError(f"sandbox {sandbox.id} was not fully removed: {'; '.join(errors)}",
                               hint="run 'appliance sandbox destroy' again or restart the daemon to reconcile")

    # -- reconcile --------------------------------------------------------------------------
    def _live_here(self) -> list[Sandbox]:
        """The live sandboxes of this host: with worker hosts, the others' rows are theirs to reconcile."""
        return list(Sandbox.select().where(Sandbox.state.in_(SandboxState.LIVE) & on_host(self.config.appliance_host)))

    def reconcile(self, creating_grace: float | None = None) -> dict[str, list[str]]:
        """Make libvirt, taps and files agree with the database. Touches only this instance's things.

        - a domain tagged with our instance whose sandbox has no live row: destroyed;
        - a live row whose domain vanished: marked lost (a row still `creating` is left alone for
          `creating_grace` seconds, because another process may be creating it right now);
        - taps with our prefix and sandbox directories that no live row owns: removed;
        - a session's guest still paused (claimed from the warm pool by a process that died before
          resuming it): resumed;
        - template generations that are neither current nor backing a live sandbox: removed.
        """
        grace = self.config.ready_timeout + 60 if creating_grace is None else creating_grace
        report: dict[str, list[str]] = {"destroyed_domains": [], "lost": [], "removed_taps": [], "removed_dirs": [],
                                        "resumed": [], "removed_templates": []}
        live = {s.id: s for s in self._live_here()}
        tagged = [t for t in self.hv.tagged_domains() if t.instance == self.instance]
        domains = {t.sandbox_id: t for t in tagged}

        for tag in tagged:
            if tag.sandbox_id not in live:
                self.hv.destroy(tag.name)
                report["destroyed_domains"].append(tag.name)

        now = utcnow()
        for sandbox in live.values():
            if sandbox.state == SandboxState.DESTROYING:  # a destroy was interrupted: finish it
                self._finish_destroy(sandbox)
                report["destroyed_domains"].append(sandbox.domain_name)
                continue
            tag = domains.get(sandbox.id)
            if tag is not None and tag.active:
                if sandbox.purpose in ("session", "admin") and self.hv.is_paused(sandbox.domain_name):
                    # claimed from the warm pool by a process that died before it resumed the guest
                    self.hv.resume(sandbox.domain_name)
                    report["resumed"].append(sandbox.id)
                continue
            young = sandbox.state == SandboxState.CREATING and (now - sandbox.created_at).total_seconds() < grace
            if young:
                continue
            Sandbox.update(state=SandboxState.LOST, ended_at=now,
                           error="its guest was gone when the appliance reconciled").where(Sandbox.id == sandbox.id).execute()
            report["lost"].append(sandbox.id)
            try:
                self._teardown(sandbox)
            except SandboxError as e:
                log.warning("%s", e.message)

        still_live = {s.id: s for s in self._live_here()}
        self.egress.reconcile([
            (s.id, s.address, s.tap, Policy.from_dict(s.network_policy), s.session_id, s.mac)
            for s in still_live.values()
        ])
        report["removed_taps"] = self.egress.remove_stray_taps({s.tap for s in still_live.values()})
        if self.config.sandbox_dir.exists():
            for entry in self.config.sandbox_dir.iterdir():
                if entry.is_dir() and entry.name.startswith("sb-") and entry.name not in still_live:
                    shutil.rmtree(entry, ignore_errors=True)
                    report["removed_dirs"].append(entry.name)
        if self.templates().disk_root.is_dir():
            report["removed_templates"] = self.templates().sweep(
                {s.template_key for s in still_live.values() if s.template_key})
        for key, items in report.items():
            if items:
                log.info("reconcile: %s: %s", key.replace("_", " "), ", ".join(items))
        return report

