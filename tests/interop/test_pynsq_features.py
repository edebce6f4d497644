"""pynsq negotiating nsqd's features: deflate, snappy, TLS, TLS + deflate, AUTH.

pynsq (the Python client on PyPI) asks for them in IDENTIFY and upgrades
its tornado stream the way it does against the real nsqd; a Writer
publishes and a Reader on the same features receives every message.
snappy needs python-snappy (pynsq's own dependency for it) and our snappy
extra; those tests are skipped without them.
"""
from __future__ import annotations

import ssl
from typing import Any, Dict, List

import pytest

nsq = pytest.importorskip("nsq")
pytest.importorskip("tornado.ioloop")

from nsqd_sync.transport import snappy_available  # noqa: E402
from tests.authserver import AuthServer, allow, grant  # noqa: E402
from tests.helpers import NodeProcess  # noqa: E402
from tests.interop.pynsq_loop import close_all, make_loop, run_loop  # noqa: E402

try:
    import snappy as python_snappy  # noqa: F401 - pynsq's snappy support
except ImportError:  # pragma: no cover - depends on the environment
    python_snappy = None


@pytest.fixture
def start_node(tmp_path):
    nodes: List[NodeProcess] = []

    def start(*args: str) -> NodeProcess:
        node = NodeProcess("nsqd", args=list(args), data_path=str(tmp_path / ("n%d" % len(nodes))))
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


def round_trip(node: NodeProcess, topic: str, total: int = 50, **conn_kwargs: Any) -> Dict[str, Any]:
    """Writer -> topic -> Reader, both with conn_kwargs; returns what happened."""
    loop = make_loop()
    addr = node.tcp_address
    got: List[bytes] = []
    results: List[Any] = []

    def handler(msg):
        got.append(msg.body)
        return True

    reader = nsq.Reader(topic, "ch", message_handler=handler, nsqd_tcp_addresses=[addr], max_in_flight=20,
                        **conn_kwargs)
    writer = nsq.Writer([addr], **conn_kwargs)

    def publish(i: int = 0) -> None:
        if i >= total:
            return
        if not writer.conns:
            loop.call_later(0.05, publish, i)
            return
        writer.pub(topic, b"%s-%04d" % (topic.encode(), i) + b" payload" * 20,
                   callback=lambda conn, data: results.append(data))
        loop.call_later(0.001, publish, i + 1)

    run_loop(loop, lambda: reader.total_rdy > 0, 10)
    loop.add_callback(publish)
    run_loop(loop, lambda: len(got) >= total, 20)
    conns = list(reader.conns.values()) + list(writer.conns.values())
    close_all(loop, [reader, writer])
    expected = sorted(b"%s-%04d" % (topic.encode(), i) + b" payload" * 20 for i in range(total))
    assert all(r == b"OK" for r in results), results[:3]
    assert sorted(got) == expected
    return {"conns": conns}


def test_deflate(start_node):
    node = start_node()
    out = round_trip(node, "pynsq_deflate", deflate=True, deflate_level=3)
    assert all(c.deflate for c in out["conns"])
    assert "upgrading connection to deflate" in node.log_text()


@pytest.mark.skipif(python_snappy is None or not snappy_available(),
                    reason="needs python-snappy and the snappy extra: pip install 'nsq-sync[snappy]'")
def test_snappy(start_node):
    node = start_node()
    round_trip(node, "pynsq_snappy", snappy=True)
    assert "upgrading connection to snappy" in node.log_text()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    certs_mod = pytest.importorskip("tests.certs", reason="needs the cryptography package (test extra)")
    return certs_mod.make_certs(str(tmp_path_factory.mktemp("certs")))


def tls_options(certs) -> Dict[str, Any]:
    # pynsq passes these to tornado's start_tls: verify our test CA and the 127.0.0.1 name
    return {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": certs["ca"]}


_TORNADO_TLS_WARNING = "ignore:ssl.PROTOCOL_TLSv1_2 is deprecated:DeprecationWarning"  # pynsq asks for it


@pytest.mark.filterwarnings(_TORNADO_TLS_WARNING)
def test_tls(start_node, certs):
    node = start_node("--tls-cert=" + certs["server"], "--tls-key=" + certs["server_key"],
                      "--https-address=127.0.0.1:0", "--tls-required=true")
    round_trip(node, "pynsq_tls", tls_v1=True, tls_options=tls_options(certs))
    assert "upgrading connection to TLS" in node.log_text()


@pytest.mark.filterwarnings(_TORNADO_TLS_WARNING)
def test_tls_and_deflate(start_node, certs):
    node = start_node("--tls-cert=" + certs["server"], "--tls-key=" + certs["server_key"],
                      "--https-address=127.0.0.1:0")
    round_trip(node, "pynsq_tls_deflate", tls_v1=True, tls_options=tls_options(certs), deflate=True)


def test_auth_secret(start_node):
    with AuthServer(allow(grant("^pynsq_auth$", [".*"], "publish", "subscribe"))) as authd:
        node = start_node("--auth-http-address=" + authd.address)
        round_trip(node, "pynsq_auth", auth_secret="pynsq-secret")
        secrets = {tuple(r.query.get("secret", [])) for r in authd.requests}
        assert secrets == {("pynsq-secret",)}
        assert authd.count() >= 2  # the Reader's and the Writer's AUTH
