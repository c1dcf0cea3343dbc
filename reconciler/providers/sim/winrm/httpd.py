"""The HTTP side of the WinRM peer: paths, Basic auth, size limit, SOAP in and out."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import structlog

from reconciler.providers.sim.winrm import soap

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.transport import WinRMServer

log = structlog.get_logger("reconciler.sim.winrm")


class IPv4Server(ThreadingHTTPServer):
    daemon_threads = True
    winrm: WinRMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-reply is routine; never print a traceback to stderr.
        log.debug("winrm.connection_error", client=str(client_address))


class IPv6Server(IPv4Server):
    address_family = socket.AF_INET6


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: pypsrp reuses one connection per session
    server: IPv4Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle holds the body ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        winrm = self.server.winrm
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._reply(400, b"", "text/plain")
            return
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[1].lower() != "wsman" or parts[0] not in winrm.nodes:
            self._discard(length)
            self._reply(404, b"", "text/plain")
            return
        node = parts[0]
        username = winrm.authenticate(self.headers.get("Authorization"))
        if username is None:
            self._discard(length)
            self._reply(401, b"", "text/plain", {"WWW-Authenticate": 'Basic realm="WSMAN"'})
            return
        if length > winrm.max_envelope_size:
            self._discard(length)
            error = soap.SoapError(
                soap.FAULT_ENVELOPE_TOO_LARGE,
                f"The request size {length} exceeds MaxEnvelopeSize {winrm.max_envelope_size}.",
                subcode="w:EncodingLimit",
            )
            self._reply(500, soap.fault("", error, node), soap_type=True)
            return
        raw = self.rfile.read(length)
        message_id = ""
        try:
            request = soap.parse_request(raw)
            message_id = request.message_id
            payload = winrm.dispatch(node, username, request)
        except soap.SoapError as err:
            self._reply(500, soap.fault(message_id, err, node), soap_type=True)
            return
        except Exception as err:  # a bug of ours: answer with a fault, keep serving
            log.warning("winrm.internal_error", node=node, error=f"{type(err).__name__}: {err}")
            error = soap.SoapError(soap.FAULT_INVALID, f"internal error: {type(err).__name__}")
            self._reply(500, soap.fault(message_id, error, node), soap_type=True)
            return
        self._reply(200, payload, soap_type=True)

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)

    def _reply(
        self,
        status: int,
        payload: bytes,
        content_type: str = "",
        headers: dict[str, str] | None = None,
        *,
        soap_type: bool = False,
    ) -> None:
        self.send_response(status)
        ctype = "application/soap+xml;charset=UTF-8" if soap_type else content_type
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("winrm.http", line=format % args)  # never headers: they carry credentials
