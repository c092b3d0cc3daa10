"""Which failed checkouts the runner tries once more: a broken connection, never a refusal."""

from appliance.sessions.runner import _transport_failure


def test_a_garbled_or_broken_connection_is_a_transport_failure():
    assert _transport_failure(b"fatal: unable to access 'http://10.0.0.1:3130/acme/app.git/': "
                              b"Received HTTP/0.9 when not allowed\n")
    assert _transport_failure(b"error: RPC failed; curl 18 transfer closed\nfatal: early EOF\n")


def test_refusals_and_missing_things_are_not_retried():
    assert not _transport_failure(b"fatal: Authentication failed for 'http://10.0.0.1:3130/acme/app.git/'\n")
    assert not _transport_failure(b"fatal: unable to access 'http://h/x.git/': The requested URL returned error: 404\n")
    assert not _transport_failure(b"fatal: could not create work tree dir 'app': No space left on device\n")
