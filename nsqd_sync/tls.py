"""TLS for nsqd: the server SSLContext from the --tls-* options, and the HTTPS listener.

As NSQ's buildTLSConfig: no context without --tls-cert/--tls-key; client
certificates per --tls-client-auth-policy (none by default, `require`: any
certificate, not verified, `require-verify`: verified against
--tls-root-ca-file, or the system's CAs without it); the minimum protocol
from --tls-min-version.  A client-auth policy alone makes TLS required.

`require` needs "ask for a certificate but accept any": OpenSSL does that
with a verify callback, which Python's ssl module does not expose; we set
one through ctypes on the context's SSL_CTX.  Where that is not possible
the policy falls back to verifying (logged at start-up).

The HTTPS listener is the HTTP API's server class with each accepted
connection wrapped in TLS in its own request thread (so a slow handshake
never holds up the accept loop).  With `--tls-required=true` the plain HTTP
listener answers every request with NSQ's 403 TLS_REQUIRED.
"""
from __future__ import annotations

import ctypes
import logging
import socket
import ssl
import warnings
from typing import TYPE_CHECKING, Any, Optional, Tuple

from .addresses import format_address

if TYPE_CHECKING:  # pragma: no cover
    from .http_api import HTTPNode
    from .options import Options

log = logging.getLogger(__name__)

TLS_VERSIONS = {
    "ssl3.0": ssl.TLSVersion.SSLv3,
    "tls1.0": ssl.TLSVersion.TLSv1,
    "tls1.1": ssl.TLSVersion.TLSv1_1,
    "tls1.2": ssl.TLSVersion.TLSv1_2,
    "tls1.3": ssl.TLSVersion.TLSv1_3,
}

HANDSHAKE_TIMEOUT = 30.0  # an HTTPS client that never finishes its handshake

_SSL_VERIFY_PEER = 0x01
_SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept_any(preverify_ok: int, store_ctx: Any) -> int:
    return 1


_ACCEPT_ANY = _VERIFY_CALLBACK(_accept_any)  # kept alive for the life of the process


def apply_policy(opts: "Options") -> None:
    """NSQ: a client certificate policy implies --tls-required."""
    if opts.tls_client_auth_policy and not opts.tls_required:
        opts.tls_required = True


def build_server_context(opts: "Options") -> Optional[ssl.SSLContext]:
    """The SSLContext for TCP upgrades and HTTPS, or None without --tls-cert/--tls-key."""
    if not opts.tls_cert and not opts.tls_key:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise RuntimeError("failed to build TLS config - %s" % _reason(e)) from None
    with warnings.catch_warnings():  # Python deprecates TLS < 1.2; NSQ's default is tls1.0
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            ctx.minimum_version = TLS_VERSIONS.get(opts.tls_min_version, ssl.TLSVersion.TLSv1)
        except ValueError:  # e.g. an OpenSSL without SSLv3
            ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # a writer then never has to read
    policy = opts.tls_client_auth_policy
    if opts.tls_root_ca_file:
        try:
            ctx.load_verify_locations(cafile=opts.tls_root_ca_file)
        except (OSError, ssl.SSLError) as e:
            raise RuntimeError("failed to build TLS config - %s" % _reason(e)) from None
    if policy == "require-verify":
        if not opts.tls_root_ca_file:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif policy == "require":
        ctx.verify_mode = ssl.CERT_REQUIRED
        if not _accept_any_certificate(ctx):
            log.warning("TLS: cannot accept unverified client certificates here: "
                        "--tls-client-auth-policy=require verifies them")
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e)


def _accept_any_certificate(ctx: ssl.SSLContext) -> bool:
    """Require a client certificate but accept any (Go's tls.RequireAnyClientCert)."""
    try:
        import _ssl

        lib = ctypes.CDLL(getattr(_ssl, "__file__", None))  # libssl is among its dependencies
        set_verify = lib.SSL_CTX_set_verify
        set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        set_verify.restype = None
        # a PySSLContext starts with its SSL_CTX pointer right after the object header
        ssl_ctx = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
        if not ssl_ctx:
            return False
        set_verify(ssl_ctx, _SSL_VERIFY_PEER | _SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                   ctypes.cast(_ACCEPT_ANY, ctypes.c_void_p))
    except (OSError, AttributeError, TypeError, ValueError) as e:
        log.debug("TLS: no verify callback: %s", e)
        return False
    return True


# ---------------------------------------------------------------- HTTP(S)


def make_https_server(address: Tuple[str, int], nsqd: "HTTPNode", context: ssl.SSLContext):
    """The HTTP API on a TLS listener (bound, not yet serving)."""
    from .http_api import NSQDHTTPServer

    class NSQDHTTPSServer(NSQDHTTPServer):
        """Each connection's TLS handshake runs in its request thread."""

        def finish_request(self, request: socket.socket, client_address: Any) -> None:
            try:
                request.settimeout(HANDSHAKE_TIMEOUT)
                tls_sock = context.wrap_socket(request, server_side=True)
                tls_sock.settimeout(None)
            except (OSError, ssl.SSLError) as e:
                log.warning("http: TLS handshake error from %s - %s", format_address(client_address), e)
                return
            try:
                self.RequestHandlerClass(tls_sock, client_address, self)
            finally:
                try:
                    tls_sock.close()
                except OSError:
                    pass

    return NSQDHTTPSServer(address, nsqd)


def require_tls_on(server: Any, nsqd: "HTTPNode") -> None:
    """Make a plain HTTP listener refuse everything with NSQ's 403 TLS_REQUIRED."""
    base = server.RequestHandlerClass

    class TLSRequiredHandler(base):  # type: ignore[misc, valid-type]
        def handle_expect_100(self) -> bool:
            return True  # answer 403 without inviting the body

        def parse_request(self) -> bool:
            """A well-formed request gets the 403 instead of being dispatched."""
            if not super().parse_request():
                return False
            https = getattr(nsqd, "https_address", ("", 0))
            body = ('{"message": "TLS_REQUIRED", "https_port": %d}' % https[1]).encode()
            self.send_response_only(403)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("X-NSQ-Content-Type", "nsq; version=1.0")
            self.send_header("Date", self.date_time_string())
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return False

    server.RequestHandlerClass = TLSRequiredHandler
