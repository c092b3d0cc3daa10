"""Stand-ins for PyPI and the npm registry on the test internet: one TLS server answering for
pypi.org, files.pythonhosted.org and registry.npmjs.org (by Host header) with packages made here —
a pure-Python wheel per Python package (PEP 503 simple index) and an npm tarball per npm package
(a packument with integrity). Every request is recorded, so a test sees what reached "the internet".

    registry = PackageRegistries(host="203.0.113.30", tls=(cert, key))
    registry.add_wheel("tinycalc", "1.0", {"tinycalc/__init__.py": "def add(a, b): ..."})
    registry.add_npm("tinyfmt", "1.0.0", {"index.js": "module.exports = ..."})
    ns.run(registry.start)   # its socket belongs to the namespace
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import ssl
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAMES = ("pypi.org", "files.pythonhosted.org", "registry.npmjs.org")


def _b64_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(name: str, version: str, files: dict[str, str]) -> tuple[str, bytes]:
    """A py3-none-any wheel holding `files` (path → text), with METADATA, WHEEL and RECORD."""
    dist = f"{name.replace('-', '_')}-{version}"
    members = dict(files)
    members[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    members[f"{dist}.dist-info/WHEEL"] = "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [f"{path},sha256={_b64_sha256(text.encode())},{len(text.encode())}" for path, text in members.items()]
    members[f"{dist}.dist-info/RECORD"] = "\n".join(record + [f"{dist}.dist-info/RECORD,,"]) + "\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, text in members.items():
            z.writestr(path, text)
    return f"{dist}-py3-none-any.whl", buf.getvalue()


def make_npm_tarball(name: str, version: str, files: dict[str, str]) -> bytes:
    members = {"package.json": json.dumps({"name": name, "version": version, "main": "index.js"}), **files}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{path}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class PackageRegistries:
    def __init__(self, host: str, tls: tuple[str, str], port: int = 443):
        self.host, self.port, self.tls = host, port, tls
        self.routes: dict[tuple[str, str], tuple[str, bytes]] = {}  # (host, path) → (type, body)
        self.requests: list[tuple[str, str]] = []                 # (host, path) in arrival order
        self._server: ThreadingHTTPServer | None = None

    def add_wheel(self, name: str, version: str, files: dict[str, str]) -> None:
        filename, data = make_wheel(name, version, files)
        digest = hashlib.sha256(data).hexdigest()
        self.routes[("files.pythonhosted.org", f"/packages/{filename}")] = ("application/octet-stream", data)
        url = f"https://files.pythonhosted.org/packages/{filename}#sha256={digest}"
        page = (f"<!DOCTYPE html><html><body><a href=\"{html.escape(url)}\">{html.escape(filename)}</a>"
                "</body></html>")
        self.routes[("pypi.org", f"/simple/{name}/")] = ("text/html", page.encode())

    def add_npm(self, name: str, version: str, files: dict[str, str]) -> None:
        data = make_npm_tarball(name, version, files)
        tarball = f"/{name}/-/{name}-{version}.tgz"
        self.routes[("registry.npmjs.org", tarball)] = ("application/octet-stream", data)
        packument = {
            "name": name, "dist-tags": {"latest": version},
            "versions": {version: {
                "name": name, "version": version,
                "dist": {"tarball": f"https://registry.npmjs.org{tarball}",
                         "shasum": hashlib.sha1(data).hexdigest(),
                         "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()},
            }},
        }
        self.routes[("registry.npmjs.org", f"/{name}")] = ("application/json", json.dumps(packument).encode())

    def requested(self, host: str, prefix: str = "/") -> list[str]:
        return [path for h, path in self.requests if h == host and path.startswith(prefix)]

    def start(self) -> PackageRegistries:
        registries = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                path = self.path.split("?", 1)[0]
                registries.requests.append((host, path))
                found = registries.routes.get((host, path))
                ctype, body = found if found else ("text/plain", b"not found\n")
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
