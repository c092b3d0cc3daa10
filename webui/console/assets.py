"""Front-end files installed from npm at build time (`npm install --prefix webui/assets/npm …`),
served by the app: nothing comes from a CDN at runtime."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, send_from_directory

bp = Blueprint("console_assets", __name__)

NPM = Path(__file__).resolve().parent.parent / "assets" / "npm" / "node_modules"
# the only files served from node_modules: name -> path under it
FILES = {
    "xterm.js": "@xterm/xterm/lib/xterm.js",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.js": "@xterm/addon-fit/lib/addon-fit.js",
}


@bp.get("/assets/vendor/<name>")
def vendor(name):
    if name not in FILES or not (NPM / FILES[name]).is_file():
        abort(404)
    path = NPM / FILES[name]
    return send_from_directory(path.parent, path.name, max_age=3600)
