"""Images between hosts, content-addressed: control serves its built images' files by SHA-256 to
joined hosts only (their join credential); a worker pulls over pinned HTTPS and keeps nothing that
does not hash to what it asked for."""

from __future__ import annotations

import dataclasses
import hashlib
import stat

import pytest
from fake_image import FILES, PROFILE_HASH, fake_image

from appliance import tls
from appliance.accounts.models import ApiToken, User
from appliance.client.trust import CertificateChanged
from appliance.cluster import join as host_join
from appliance.cluster.image_pull import ImageTampered, pull
from appliance.services import Services
from appliance.sessions.service import SessionService
from appliance.webserver import WebServer
from vmimages.store import ImageStore
from webui import create_app


@pytest.fixture
def control(db, cfg, tmp_path):
    clustered = dataclasses.replace(cfg, cluster_mode="on", image_dir=tmp_path / "control-images",
                                    worker_database_url="postgresql://a:b@10.0.0.1/x")
    fake_image(clustered.image_dir)
    token = host_join.mint(clustered, "admin")[0]
    credential = host_join.redeem(clustered, token, "h16b-w1", "10.0.0.2").host_credential
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    info = tls.generate_self_signed(cert, key, ["localhost", "127.0.0.1"])
    app = create_app(Services.build(clustered, sessions=SessionService(clustered)), test_config={"TESTING": True})
    server = WebServer(app, "127.0.0.1", 0, str(cert), str(key), threads=4).start()
    worker = dataclasses.replace(cfg, image_dir=tmp_path / "worker-images", control_url=server.url.rstrip("/"),
                                 control_fingerprint=info.fingerprint, host_credential=credential)
    yield {"app": app, "cfg": clustered, "worker": worker, "credential": credential, "tmp": tmp_path}
    server.shutdown()


def get(app, path, credential=None):
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    return app.test_client().get(f"/api/v1/cluster/images{path}", headers=headers)


def test_only_joined_hosts_get_images(control):
    app, disk_hash = control["app"], hashlib.sha256(FILES["disk.qcow2"]).hexdigest()
    assert get(app, "").status_code == 401
    assert get(app, f"/{disk_hash}").status_code == 401
    assert get(app, f"/{disk_hash}", "aph_" + "x" * 43).status_code == 401
    admin = User.create(username="root-admin", is_admin=True)
    assert get(app, f"/{disk_hash}", ApiToken.issue(admin)).status_code == 401, "a person's API token is no host's"
    catalog = get(app, "", control["credential"]).json["images"]
    assert [(i["profile"], i["profile_hash"]) for i in catalog] == [("minimal", PROFILE_HASH)]
    r = get(app, f"/{disk_hash}", control["credential"])
    assert r.status_code == 200 and r.data == FILES["disk.qcow2"]
    for other in ("0" * 64, "..%2F..%2Fetc%2Fpasswd", "manifest.json"):
        assert get(app, f"/{other}", control["credential"]).status_code == 404


def test_a_worker_pulls_over_pinned_https_and_checks_every_file(control):
    image, fetched = pull(control["worker"], "minimal")
    assert fetched and image.current and image.profile_hash == PROFILE_HASH
    for name, data in FILES.items():
        assert (image.dir / name).read_bytes() == data
        assert stat.S_IMODE((image.dir / name).stat().st_mode) == 0o444
    assert ImageStore(control["worker"].image_dir).get("minimal").dir == image.dir
    assert pull(control["worker"], "minimal")[1] is False, "a version already here is not fetched again"


def test_a_file_that_does_not_hash_right_is_not_kept(control):
    disk = next(control["cfg"].image_dir.glob("minimal-*")) / "disk.qcow2"
    disk.write_bytes(b"tampered" + FILES["disk.qcow2"][8:])  # control's copy changed after its manifest
    with pytest.raises(ImageTampered, match="nothing was kept"):
        pull(control["worker"], "minimal")
    assert list(control["worker"].image_dir.iterdir()) == [], "no version, no partial download"


def test_a_changed_certificate_gets_nothing_sent(control):
    other = tls.generate_self_signed(control["tmp"] / "o.crt", control["tmp"] / "o.key", ["x"])
    worker = dataclasses.replace(control["worker"], control_fingerprint=other.fingerprint)
    with pytest.raises(CertificateChanged):
        pull(worker, "minimal")
    assert not control["worker"].image_dir.exists()
