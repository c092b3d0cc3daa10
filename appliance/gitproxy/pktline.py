"""The pure parts of git's wire protocol the proxy speaks itself (gitprotocol-common, -pack, -http).

pkt-line framing, the receive-pack ref advertisement, the push request's command list, the ref
policy, and the report-status answer (wrapped in side-band when the client asked for it). No I/O
beyond reading from a file-like object.
"""

from __future__ import annotations

import dataclasses
import re

MAX_PKT_DATA = 65516  # 65520 - 4 length bytes
SIDEBAND_64K_DATA = 65515  # one byte of the packet goes to the band number
SIDEBAND_DATA = 999

# delete-refs is advertised so that a delete reaches us and is refused with a reason the agent can
# read (without it git refuses locally with a bare "[remote rejected]").
RECEIVE_CAPABILITIES = ("report-status", "delete-refs", "side-band-64k", "quiet", "ofs-delta",
                        "agent=git/appliance-proxy")

_OID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


class ProtocolError(ValueError):
    """The client sent something that is not the git protocol."""


def pkt(data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_PKT_DATA:
        raise ValueError("pkt-line too long")
    return b"%04x" % (len(data) + 4) + data


FLUSH = b"0000"


class PktReader:
    """Reads pkt-lines from a binary stream; `read()` returns None for a flush packet."""

    def __init__(self, stream):
        self.stream = stream

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.stream.read(n - len(buf))
            if not chunk:
                raise ProtocolError("unexpected end of request")
            buf += chunk
        return buf

    def read(self) -> bytes | None:
        head = self._exact(4)
        try:
            size = int(head, 16)
        except ValueError:
            raise ProtocolError(f"bad pkt-line length {head!r}") from None
        if size == 0:
            return None
        if size < 4 or size > 65520:
            raise ProtocolError(f"bad pkt-line length {size}")
        if size == 4:
            return b""
        return self._exact(size - 4)


@dataclasses.dataclass(frozen=True)
class Command:
    old: str
    new: str
    ref: str

    @property
    def is_delete(self) -> bool:
        return set(self.new) == {"0"}

    @property
    def is_create(self) -> bool:
        return set(self.old) == {"0"}


@dataclasses.dataclass
class PushRequest:
    commands: list[Command]
    capabilities: set[str]
    shallow: list[str]

    @property
    def sideband(self) -> int:
        """Max data bytes per side-band packet, 0 if the client did not ask for side-band."""
        if "side-band-64k" in self.capabilities:
            return SIDEBAND_64K_DATA
        if "side-band" in self.capabilities:
            return SIDEBAND_DATA
        return 0


def parse_push_request(reader: PktReader) -> PushRequest:
    """The update-request of a push, up to and including its flush packet (the pack follows).

        update-request = *shallow ( command-list | push-cert )
        command-list   = PKT-LINE(command NUL capability-list) *PKT-LINE(command) flush-pkt
        command        = old-id SP new-id SP name
    """
    commands: list[Command] = []
    caps: set[str] = set()
    shallow: list[str] = []
    first = True
    while True:
        line = reader.read()
        if line is None:
            break
        text = line.rstrip(b"\n")
        if first and text.startswith(b"shallow "):
            shallow.append(text[8:].decode("ascii", "replace"))
            continue
        if first and text.startswith(b"push-cert"):
            raise ProtocolError("signed pushes are not supported by the appliance")
        if first:
            text, _, capbytes = text.partition(b"\0")
            caps = set(capbytes.decode("ascii", "replace").split())
            first = False
        try:
            old, new, ref = text.decode("utf-8").split(" ", 2)
        except (UnicodeDecodeError, ValueError):
            raise ProtocolError(f"bad command line {text[:100]!r}") from None
        if not (_OID.match(old) and _OID.match(new)) or not ref:
            raise ProtocolError(f"bad command line {text[:100]!r}")
        commands.append(Command(old, new, ref))
    return PushRequest(commands, caps, shallow)


def refusal(cmd: Command, work_branch: str) -> str | None:
    """Why `cmd` may not go upstream for a session that owns `work_branch`; None if it may."""
    work_ref = f"refs/heads/{work_branch}"
    if cmd.ref != work_ref:
        return f"the appliance only lets this session push {work_ref}"
    if cmd.is_delete:
        return f"the appliance does not delete branches; this session may only update {work_ref}"
    return None


def receive_advertisement(refs: list[tuple[str, str]], capabilities=RECEIVE_CAPABILITIES) -> bytes:
    """`GET info/refs?service=git-receive-pack` body: the service line, then the refs with our
    capabilities on the first line (a placeholder line for an empty repository)."""
    out = [pkt("# service=git-receive-pack\n"), FLUSH]
    caps = " ".join(capabilities)
    if not refs:
        out.append(pkt(f"{'0' * 40} capabilities^{{}}\0{caps}\n"))
    for i, (oid, name) in enumerate(refs):
        out.append(pkt(f"{oid} {name}\0{caps}\n" if i == 0 else f"{oid} {name}\n"))
    out.append(FLUSH)
    return b"".join(out)


def sideband(band: int, data: bytes, limit: int = SIDEBAND_64K_DATA) -> bytes:
    out = []
    for i in range(0, len(data), limit):
        out.append(pkt(bytes([band]) + data[i:i + limit]))
    return b"".join(out)


def one_line(text: str) -> str:
    """Something safe to put in a report-status line: one line, printable, bounded."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()[:300] or "refused"


def report_status(unpack: str, results: list[tuple[str, str | None]], messages: list[str],
                  req: PushRequest) -> bytes:
    """The receive-pack response: `messages` on band 2 (git prints them as `remote: ...`), then
    report-status (on band 1 with side-band, bare otherwise), then a flush."""
    report = [pkt(f"unpack {one_line(unpack) if unpack != 'ok' else 'ok'}\n")]
    for ref, why in results:
        report.append(pkt(f"ok {ref}\n") if why is None else pkt(f"ng {ref} {one_line(why)}\n"))
    report.append(FLUSH)
    body = b"".join(report)
    if "report-status" not in req.capabilities:
        body = b""
    limit = req.sideband
    if not limit:
        return body
    out = [sideband(2, "".join(m.rstrip("\n") + "\n" for m in messages).encode("utf-8", "replace"), limit)
           if messages else b""]
    if body:
        out.append(sideband(1, body, limit))
    out.append(FLUSH)
    return b"".join(out)


def error_packet(message: str) -> bytes:
    """An `ERR` packet: git clients die with `fatal: remote error: <message>`."""
    return pkt(f"ERR {one_line(message)}\n")
