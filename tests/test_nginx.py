"""The shipped nginx site (deploy/nginx/queues.conf) in a real nginx, in front of a real service."""

import configparser
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORDS, REPO, basic, eventually
from tests.live_server import LiveServer, free_port

pytestmark = pytest.mark.slow
NGINX = "/usr/sbin/nginx"
SITE = REPO / "deploy" / "nginx" / "queues.conf"
START_SECONDS = 10


def directive(text, name):
    """The value of the one `name value;` directive in an nginx config text."""
    values = re.findall(rf"^\s*{name}\s+([^;]+);", text, flags=re.M)
    assert len(values) == 1, f"{SITE} should set {name} exactly once, not {len(values)} times"
    return values[0]


def nginx_size(value):
    """An nginx size ("1m", "512k", "1024") in bytes."""
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()
    return int(number) * 1024 ** " kmg".index(unit.lower() or " ")


def nginx_seconds(value):
    number, unit = re.fullmatch(r"(\d+)(s|m)?", value).groups()
    return int(number) * (60 if unit == "m" else 1)


def render_site(https_port, http_port, upstream_port, certificate, directory):
    """The shipped site with test ports, certificate, upstream and logs, listening on 127.0.0.1 only."""
    text = SITE.read_text()
    cert, key = certificate
    substitutions = [
        (r"^\s*listen \[::\]:.*\n", ""),
        (r"listen 443 ", f"listen 127.0.0.1:{https_port} "),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"server 127\.0\.0\.1:7500;", f"server 127.0.0.1:{upstream_port};"),
        (r"ssl_certificate \S+;", f"ssl_certificate {cert};"),
        (r"ssl_certificate_key \S+;", f"ssl_certificate_key {key};"),
        (r"/var/log/nginx/", f"{directory}/"),
    ]
    for pattern, replacement in substitutions:
        text, count = re.subn(pattern, replacement, text, flags=re.M)
        assert count, f"{SITE} no longer matches {pattern!r}: update render_site"
    listens = re.findall(r"^\s*listen\s+(\S+)", text, flags=re.M)
    assert listens and all(address.startswith("127.0.0.1:") for address in listens), listens
    return text


class Nginx:
    """A foreground nginx running the rendered site, with every file it writes in directory."""

    def __init__(self, directory, upstream_port, certificate):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.https_port, self.http_port = free_port(), free_port()
        site = self.directory / "site.conf"
        site.write_text(render_site(self.https_port, self.http_port, upstream_port, certificate, directory))
        self.config = self.directory / "nginx.conf"
        self.config.write_text(self._main_config(site))
        self.error_log = self.directory / "error.log"
        self.process = None

    def _main_config(self, site):
        temp_paths = "".join(
            f"    {kind}_temp_path {self.directory / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return (
            ("user root;\n" if os.geteuid() == 0 else "")  # else workers would run as nobody
            + "daemon off;\nworker_processes 1;\n"
            + f"pid {self.directory / 'nginx.pid'};\nerror_log {self.directory / 'error.log'} info;\n"
            # Debian's nginx.conf has 768; the slow-client test opens 500.
            + "events {\n    worker_connections 768;\n}\n"
            + "http {\n"
            + temp_paths
            + f"    access_log {self.directory / 'access.log'};\n"
            + f"    include {site};\n"
            + "}\n"
        )

    def start(self):
        with open(self.directory / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(
                [NGINX, "-p", str(self.directory), "-c", str(self.config), "-e", str(self.error_log)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_SECONDS
        while not self._accepts():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nginx did not start:\n{self.logs()}")
            time.sleep(0.05)
        return self

    def _accepts(self):
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.https_port)) == 0

    def logs(self):
        return "".join(
            path.read_text(errors="replace")
            for path in (self.directory / "stderr.log", self.error_log)
            if path.exists()
        )

    def stop(self):
        """Stop nginx (fast shutdown); if it does not stop, kill its process group."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def url(self, path):
        return f"https://127.0.0.1:{self.https_port}{path}"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate and key for 127.0.0.1, valid for a day."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate: apt-get install -y openssl")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, certificate):
    """(nginx, service): the shipped site in front of a service with trusted_proxies = 1."""
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing; these tests need nginx: apt-get install -y nginx-light")
    max_body = nginx_size(directive(SITE.read_text(), "client_max_body_size"))
    service = LiveServer(
        tmp_path_factory.mktemp("service"),
        server={"trusted_proxies": 1},
        queues={"max_request_bytes": max_body},
    )
    service.start()
    nginx = Nginx(tmp_path_factory.mktemp("nginx"), service.port, certificate)
    try:
        nginx.start()
        yield nginx, service
    finally:
        nginx.stop()
        service.stop()


@pytest.fixture
def admin(proxied, certificate):
    """A keep-alive HTTPS session through nginx as admin, checking nginx's certificate."""
    with requests.Session() as session:
        session.auth = ("admin", PASSWORDS["admin"])
        session.verify = str(certificate[0])
        session.trust_env = False  # else REQUESTS_CA_BUNDLE would win over session.verify
        yield session


def create_queue(nginx, admin, name):
    response = admin.post(nginx.url("/queues"), json={"name": name})
    assert response.status_code == 201, response.text
    return response


def log_entries(service, request_id):
    """The request log's lines of one request; a line still being written is left out."""
    path = service.directory / "logs" / "requests.log"
    text = path.read_text() if path.exists() else ""
    lines = text[: text.rfind("\n") + 1].splitlines()
    return [entry for entry in map(json.loads, lines) if entry["request_id"] == request_id]


def test_site_limits_match_the_service_defaults():
    site = SITE.read_text()
    config = configparser.ConfigParser()
    config.read(REPO / "config.ini")
    assert nginx_size(directive(site, "client_max_body_size")) == config.getint("queues", "max_request_bytes")
    assert nginx_seconds(directive(site, "proxy_read_timeout")) > config.getint("queues", "max_wait_seconds")
    assert str(config.getint("queues", "max_request_bytes")) in site.split("@payload_too_large {")[1]


def test_requests_pass_through_over_https(proxied, admin):
    nginx, _ = proxied
    created = create_queue(nginx, admin, "through")
    assert created.headers["Location"] == "/queues/through"
    pushed = admin.post(
        nginx.url("/queues/through/push"), json={"message": {"n": 1}}, headers={"X-Request-ID": "via-nginx-1"}
    )
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers["X-Request-ID"] == "via-nginx-1"
    pulled = admin.post(nginx.url("/queues/through/pull"))
    assert pulled.status_code == 200
    assert (pulled.json()["id"], pulled.json()["message"]) == (pushed.json()["id"], {"n": 1})
    assert pulled.headers["X-Request-ID"]  # nginx's id, when the client sent none
    anonymous = requests.get(nginx.url("/queues/through"), verify=admin.verify, timeout=10)
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "unauthorized")


def test_tls_offers_http2_over_tls_1_2_or_1_3(proxied, certificate):
    nginx, _ = proxied
    context = ssl.create_default_context(cafile=str(certificate[0]))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", nginx.https_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "h2"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert re.search(r"^\s*ssl_protocols TLSv1\.2 TLSv1\.3;", SITE.read_text(), flags=re.M)


def test_request_log_shows_the_real_client_from_x_forwarded_for(proxied, certificate):
    nginx, service = proxied
    context = ssl.create_default_context(cafile=str(certificate[0]))
    # All of 127/8 reaches the loopback: the client is 127.0.0.2, nginx reaches gunicorn from 127.0.0.1.
    connection = http.client.HTTPSConnection(
        "127.0.0.1", nginx.https_port, context=context, source_address=("127.0.0.2", 0), timeout=10
    )
    try:
        # A client's own X-Forwarded-For is kept, but only the hop nginx adds is believed.
        headers = {**basic("admin"), "X-Request-ID": "from-127-0-0-2", "X-Forwarded-For": "10.9.9.9"}
        connection.request("GET", "/queues", headers=headers)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 200
    eventually(lambda: len(log_entries(service, "from-127-0-0-2")) == 2)
    request_line, response_line = log_entries(service, "from-127-0-0-2")
    assert request_line["direction"] == "request"
    assert request_line["source"] == "127.0.0.2"  # the IP alone: the client's port is unknown
    assert request_line["destination"] == f"127.0.0.1:{service.port}"
    assert request_line["headers"]["X-Forwarded-For"] == "10.9.9.9, 127.0.0.2"
    assert request_line["headers"]["X-Forwarded-Proto"] == "https"
    assert response_line["destination"] == "127.0.0.2"


def test_a_body_of_the_limit_passes_and_one_byte_more_is_a_json_413(proxied, admin):
    nginx, service = proxied
    limit = nginx_size(directive(SITE.read_text(), "client_max_body_size"))
    create_queue(nginx, admin, "big")
    frame = b'{"message": {"pad": ""}}'
    body = frame.replace(b'""', b'"' + b"x" * (limit - len(frame)) + b'"')
    headers = {"Content-Type": "application/json"}
    accepted = admin.post(nginx.url("/queues/big/push"), data=body, headers=headers)
    assert accepted.status_code == 201, accepted.text
    refused = admin.post(nginx.url("/queues/big/push"), data=body + b" ", headers=headers)
    assert refused.status_code == 413
    assert refused.headers["Content-Type"] == "application/json"
    assert refused.json()["error"]["code"] == "payload_too_large"
    assert refused.headers["X-Request-ID"]
    chunked = admin.post(nginx.url("/queues/big/push"), data=iter([body, b" "]), headers=headers)
    assert (chunked.status_code, chunked.json()["error"]["code"]) == (413, "payload_too_large")
    assert admin.get(nginx.url("/queues/big")).json()["size"] == 1


def test_plain_http_is_redirected_to_https(proxied):
    nginx, _ = proxied
    response = requests.get(
        f"http://127.0.0.1:{nginx.http_port}/queues?x=1", allow_redirects=False, timeout=10
    )
    assert response.status_code == 301
    assert response.headers["Location"] == "https://127.0.0.1/queues?x=1"


def test_a_long_poll_through_nginx_waits_and_answers_204(proxied, admin):
    nginx, _ = proxied
    create_queue(nginx, admin, "idle")
    started = time.monotonic()
    response = admin.post(nginx.url("/queues/idle/pull?wait=3"), timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 204, response.text
    assert 2.9 <= elapsed < 10


def test_a_service_that_does_not_answer_is_a_json_502(tmp_path, certificate):
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing; these tests need nginx: apt-get install -y nginx-light")
    nginx = Nginx(tmp_path, free_port(), certificate).start()  # nothing listens upstream
    try:
        response = requests.get(nginx.url("/queues"), verify=str(certificate[0]), timeout=10)
    finally:
        nginx.stop()
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "unreachable"


def test_the_cross_site_check_compares_the_browsers_origin_with_the_public_one(proxied, admin):
    nginx, _ = proxied
    public = f"https://127.0.0.1:{nginx.https_port}"
    created = admin.post(nginx.url("/queues"), json={"name": "origin"}, headers={"Origin": public})
    assert created.status_code == 201, created.text
    for other in ("https://127.0.0.1", f"http://127.0.0.1:{nginx.https_port}", "https://evil.example"):
        refused = admin.delete(nginx.url("/queues/origin"), headers={"Origin": other})
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "cross_origin"), other
    assert admin.delete(nginx.url("/queues/origin"), headers={"Origin": public}).status_code == 200


def test_500_slow_clients_through_nginx_leave_others_answering(proxied, admin, certificate):
    nginx, _ = proxied
    context = ssl.create_default_context(cafile=str(certificate[0]))
    slow = []
    try:
        for i in range(500):
            sock = context.wrap_socket(
                socket.create_connection(("127.0.0.1", nginx.https_port), timeout=10),
                server_hostname="127.0.0.1",
            )
            head = b"POST /queues HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
            sock.sendall(head if i % 2 else head + b"\r\n{")
            slow.append(sock)
        assert requests.get(nginx.url("/health"), verify=admin.verify, timeout=1).status_code == 200
        assert admin.get(nginx.url("/queues"), timeout=1).status_code == 200
    finally:
        for sock in slow:
            sock.close()
