"""The real server (`manage.py serve`, daphne): request bodies reach the application as they
were sent. Twisted's own form parsing is off, so a capture upload is not read into the server's
memory first and a malformed multipart body is answered by the application, not by Twisted."""

import http.client
from urllib.parse import urlsplit

import pytest

from tests.support.processes import serve_start, stop
from tests.support.queues import private_queue_close, private_queue_open

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(settings, tmp_path):
    private = private_queue_open(settings)
    process = None
    try:
        process, url = serve_start(private.name, tmp_path / "serve.log", EMBEDDED_WORKER="false")
        yield url, tmp_path / "serve.log"
    finally:
        stop(process)
        private_queue_close(private)


def _post(url: str, path: str, body: bytes, content_type: str) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("POST", path, body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def test_a_malformed_multipart_upload_is_answered_by_the_application(server):
    url, log = server
    # A boundary that never appears: Twisted's parser refused this with a bare 400.
    response = _post(
        url,
        "/api/v1/jobs/",
        b"--not-the-boundary\r\ngarbage without an end",
        "multipart/form-data; boundary=expected-boundary",
    )
    assert response.status == 401, (response.status, response.body, log.read_text())
    assert response.getheader("Content-Type") == "application/problem+json"


def test_a_multipart_form_reaches_the_application_intact(server):
    url, log = server
    body = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="username"\r\n\r\n'
        b"nobody@example.com\r\n"
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="password"\r\n\r\n'
        b"wrong-password\r\n"
        b"--b0undary--\r\n"
    )
    # Django reads the form itself: the sign-in form is answered (refused for the CSRF token
    # this client lacks), not a parse error.
    response = _post(url, "/accounts/login/", body, "multipart/form-data; boundary=b0undary")
    assert response.status == 403, (response.status, response.body[:500], log.read_text())
    assert b"CSRF" in response.body
