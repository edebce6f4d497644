"""NSQ's own example config files start our nodes, and every option value
NSQ 1.3.0's parser accepts is accepted with the same meaning (issue 12 #14).

The two config files are `contrib/nsqd.cfg.example` and
`contrib/nsqlookupd.cfg.example` of NSQ v1.3.0, byte for byte as NSQ ships
them; only the listen addresses and the data path are given on the command
line (which wins over the file), so the test runs on ephemeral loopback ports.
The expected answers were read from the real nsqd 1.3.0 run side by side.
"""
from __future__ import annotations

import subprocess

import pytest
import requests

from tests.certs import make_certs
from tests.helpers import NodeProcess, command_for, http_request

pytestmark = pytest.mark.timeout(90)

# NSQ v1.3.0 contrib/nsqd.cfg.example, as shipped
NSQD_CFG_EXAMPLE = '''\
## log verbosity level: debug, info, warn, error, or fatal
log_level = "info"

## unique identifier (int) for this worker (will default to a hash of hostname)
# id = 5150

## <addr>:<port> to listen on for TCP clients
tcp_address = "0.0.0.0:4150"

## <addr>:<port> to listen on for HTTP clients
http_address = "0.0.0.0:4151"

## <addr>:<port> to listen on for HTTPS clients
# https_address = "0.0.0.0:4152"

## address that will be registered with lookupd (defaults to the OS hostname)
# broadcast_address = ""

## cluster of nsqlookupd TCP addresses
nsqlookupd_tcp_addresses = [
    "127.0.0.1:4160"
]

## duration to wait before HTTP client connection timeout
http_client_connect_timeout = "2s"

## duration to wait before HTTP client request timeout
http_client_request_timeout = "5s"

## path to store disk-backed messages
# data_path = "/var/lib/nsq"

## number of messages to keep in memory (per topic/channel)
mem_queue_size = 10000

## number of bytes per diskqueue file before rolling
max_bytes_per_file = 104857600

## number of messages per diskqueue fsync
sync_every = 2500

## duration of time per diskqueue fsync (time.Duration)
sync_timeout = "2s"


## duration to wait before auto-requeing a message
msg_timeout = "60s"

## maximum duration before a message will timeout
max_msg_timeout = "15m"

## maximum size of a single message in bytes
max_msg_size = 1024768

## maximum requeuing timeout for a message
max_req_timeout = "1h"

## maximum size of a single command body
max_body_size = 5123840


## maximum client configurable duration of time between client heartbeats
max_heartbeat_interval = "60s"

## maximum RDY count for a client
max_rdy_count = 2500

## maximum client configurable size (in bytes) for a client output buffer
max_output_buffer_size = 65536

## maximum client configurable duration of time between flushing to a client (time.Duration)
max_output_buffer_timeout = "1s"


## UDP <addr>:<port> of a statsd daemon for pushing stats
# statsd_address = "127.0.0.1:8125"

## prefix used for keys sent to statsd (%s for host replacement)
statsd_prefix = "nsq.%s"

## duration between pushing to statsd (time.Duration)
statsd_interval = "60s"

## toggle sending memory and GC stats to statsd
statsd_mem_stats = true

## the size in bytes of statsd UDP packets
# statsd_udp_packet_size = 508


## message processing time percentiles to keep track of (float)
e2e_processing_latency_percentiles = [
    1.0,
    0.99,
    0.95
]

## calculate end to end latency quantiles for this duration of time (time.Duration)
e2e_processing_latency_window_time = "10m"


## path to certificate file
tls_cert = ""

## path to private key file
tls_key = ""

## set policy on client certificate (require - client must provide certificate,
##  require-verify - client must provide verifiable signed certificate)
# tls_client_auth_policy = "require-verify"

## set custom root Certificate Authority
# tls_root_ca_file = ""

## require client TLS upgrades
tls_required = false

## minimum TLS version ("ssl3.0", "tls1.0," "tls1.1", "tls1.2")
tls_min_version = ""

## enable deflate feature negotiation (client compression)
deflate = true

## max deflate compression level a client can negotiate (> values == > nsqd CPU usage)
max_deflate_level = 6

## enable snappy feature negotiation (client compression)
snappy = true
'''

# NSQ v1.3.0 contrib/nsqlookupd.cfg.example, as shipped
NSQLOOKUPD_CFG_EXAMPLE = '''\
## log verbosity level: debug, info, warn, error, or fatal
log_level = "info"

## <addr>:<port> to listen on for TCP clients
tcp_address = "0.0.0.0:4160"

## <addr>:<port> to listen on for HTTP clients
http_address = "0.0.0.0:4161"

## address that will be registered with lookupd (defaults to the OS hostname)
# broadcast_address = ""


## duration of time a producer will remain in the active list since its last ping
inactive_producer_timeout = "300s"

## duration of time a producer will remain tombstoned if registration remains
tombstone_lifetime = "45s"
'''


def config_value(node: NodeProcess, name: str):
    import json

    status, body, _ = http_request(node.http_port, "/config/" + name)
    assert status == 200, body
    return json.loads(body)


def test_nsqd_starts_with_nsqs_example_config(tmp_path):
    cfg = tmp_path / "nsqd.cfg"
    cfg.write_text(NSQD_CFG_EXAMPLE)
    # the file's nsqlookupd 127.0.0.1:4160 is replaced: a test never talks to a fixed port
    with NodeProcess("nsqd", ["--config=%s" % cfg, "--data-path=%s" % tmp_path,
                              "--https-address=127.0.0.1:0", "--lookupd-tcp-address=127.0.0.1:1"]) as node:
        assert http_request(node.http_port, "/ping")[:2] == (200, b"OK")
        assert config_value(node, "tls_min_version") == 0x0301  # "" means the default, tls1.0
        assert config_value(node, "max_msg_size") == 1024768
        assert config_value(node, "max_rdy_count") == 2500
        assert config_value(node, "e2e_processing_latency_percentiles") == [1, 0.99, 0.95]
        assert config_value(node, "max_output_buffer_timeout") == 10 ** 9
        assert node.stop() == 0


def test_nsqlookupd_starts_with_nsqs_example_config(tmp_path):
    cfg = tmp_path / "nsqlookupd.cfg"
    cfg.write_text(NSQLOOKUPD_CFG_EXAMPLE)
    with NodeProcess("nsqlookupd", ["--config=%s" % cfg]) as node:
        assert http_request(node.http_port, "/ping")[:2] == (200, b"OK")
        assert node.stop() == 0


@pytest.mark.parametrize("value, number", [("TLS1.2", 0x0303), ("tls1.3", 0x0304), ("Tls1.1", 0x0302),
                                           ("", 0x0301)])
def test_tls_min_version_is_case_insensitive_and_empty_means_default(tmp_path, value, number):
    with NodeProcess("nsqd", ["--data-path=%s" % tmp_path, "--https-address=127.0.0.1:0",
                              "--tls-min-version=" + value]) as node:
        assert config_value(node, "tls_min_version") == number
        assert node.stop() == 0


def test_tls_min_version_in_config_file_is_case_insensitive(tmp_path):
    cfg = tmp_path / "nsqd.cfg"
    cfg.write_text('tls_min_version = "TLS1.2"\n')
    with NodeProcess("nsqd", ["--config=%s" % cfg, "--data-path=%s" % tmp_path,
                              "--https-address=127.0.0.1:0"]) as node:
        assert config_value(node, "tls_min_version") == 0x0303
        assert node.stop() == 0


@pytest.mark.parametrize("argv", [["--tls-min-version=ssl3.0"], ["--tls-min-version=SSL3.0"],
                                  ["--tls-min-version=tls1.4"]])
def test_insecure_or_unknown_tls_min_version_is_refused(tmp_path, argv):
    r = subprocess.run(command_for("nsqd") + ["--data-path=%s" % tmp_path, "--tcp-address=127.0.0.1:0",
                                              "--http-address=127.0.0.1:0"] + argv,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert r.returncode == 2, r
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "tls-min-version" in err, err


def test_tls_client_auth_policy_any_text_requires_tls(tmp_path):
    """nsqd parses the policy as free text: any non-empty value implies --tls-required."""
    r = subprocess.run(command_for("nsqd") + ["--data-path=%s" % tmp_path, "--tcp-address=127.0.0.1:0",
                                              "--http-address=127.0.0.1:0", "--tls-client-auth-policy=REQUIRE"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert r.returncode == 1, r
    assert "cannot require TLS client connections without TLS key and cert" in r.stderr.decode()
    assert "Traceback" not in r.stderr.decode()


def test_tls_client_auth_policy_in_capitals_starts_with_a_certificate(tmp_path):
    certs = make_certs(str(tmp_path))
    with NodeProcess("nsqd", ["--data-path=%s" % tmp_path, "--https-address=127.0.0.1:0",
                              "--tls-cert=" + certs["server"], "--tls-key=" + certs["server_key"],
                              "--tls-client-auth-policy=REQUIRE"]) as node:
        # TLS is required (implied, as in nsqd): plain HTTP is refused ...
        assert http_request(node.http_port, "/ping")[0] == 403
        # ... and, the policy being neither "require" nor "require-verify", no client certificate is asked
        https = "https://%s" % node.addresses["HTTPS"]
        r = requests.get(https + "/config/tls_client_auth_policy", verify=certs["ca"], timeout=10)
        assert (r.status_code, r.text) == (200, "REQUIRE")  # a string is answered as text, as nsqd does
        assert requests.get(https + "/config/tls_required", verify=certs["ca"], timeout=10).json() == 2
        assert node.stop() == 0


def test_max_rdy_count_zero_is_accepted_and_refuses_every_rdy(tmp_path, conns):
    with NodeProcess("nsqd", ["--data-path=%s" % tmp_path, "--max-rdy-count=0"]) as node:
        c = conns(node)
        c.sub("t", "c")
        c.send("RDY 1")
        c.expect_error("E_INVALID RDY count 1 out of range 0-0")
        assert node.stop() == 0


def test_mem_queue_size_minus_one_starts_and_keeps_nothing_in_memory(tmp_path, conns):
    """nsqd 1.3.0's parser takes -1 (and then panics on the first topic); here it means 0."""
    with NodeProcess("nsqd", ["--data-path=%s" % tmp_path, "--mem-queue-size=-1"]) as node:
        for i in range(3):
            assert http_request(node.http_port, "/pub?topic=t", "POST", b"m%d" % i)[:2] == (200, b"OK")
        import json
        stats = json.loads(http_request(node.http_port, "/stats?format=json&topic=t")[1])
        topic = stats["topics"][0]
        assert topic["depth"] == 3 and topic["backend_depth"] == 3, topic
        assert node.stop() == 0
