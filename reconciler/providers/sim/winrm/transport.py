"""WS-Management + PSRP server over plain HTTP on loopback, built on psrpcore's server pool.

A real PSRP client (pypsrp) opens a runspace pool here and runs pipelines; each pipeline is
handed to a ``Handler`` on a worker thread. Generic: it knows nothing of Hyper-V.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from psrpcore import (
    CreatePipelineEvent,
    GetAvailableRunspacesEvent,
    GetCommandMetadataEvent,
    PSRPPayload,
    ResetRunspaceStateEvent,
    ServerPipeline,
    ServerRunspacePool,
    SetMaxRunspacesEvent,
    SetMinRunspacesEvent,
    StreamType,
)
from psrpcore.types import PSVersion, SessionCapability

from reconciler.providers.sim.winrm import soap
from reconciler.providers.sim.winrm.httpd import IPv4Server, IPv6Server, RequestHandler
from reconciler.providers.sim.winrm.psrp import (
    MAX_ENVELOPE_WINRM2,
    MAX_ENVELOPE_WINRM3,
    Command,
    Handler,
    Invocation,
    PipelineRun,
    PipelineWriter,
    ShellState,
    TerminatingError,
)

__all__ = [
    "MAX_ENVELOPE_WINRM2",
    "MAX_ENVELOPE_WINRM3",
    "Command",
    "Handler",
    "Invocation",
    "PipelineWriter",
    "TerminatingError",
    "WinRMServer",
]

log = structlog.get_logger("reconciler.sim.winrm")

_RECEIVE_TIMEOUT_CAP = 300.0
_PS_VERSIONS = {
    # protocol -> (PSVersion, BuildVersion, CLRVersion) of $PSVersionTable
    "2.1": ("2.0", "6.1.7601.17514", "2.0.50727.5420"),
    "2.3": ("5.1.17763.1", "10.0.17763.1", "4.0.30319.42000"),
}


class WinRMServer:
    """The WS-Management endpoint ``http://HOST:PORT/<node>/wsman`` for each node."""

    def __init__(
        self,
        handler: Handler,
        nodes: Iterable[str],
        *,
        username: str,
        password: str,
        host: str = "127.0.0.1",
        port: int = 0,
        protocol_version: str = "2.3",
        max_envelope_size: int | None = None,
        idle_timeout_seconds: float = 7200.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"host must be a loopback IP address, not {host!r}") from None
        if not address.is_loopback:
            raise ValueError(
                f"refusing to serve WinRM on {host}: only loopback (127.0.0.0/8 or ::1)"
            )
        if protocol_version not in _PS_VERSIONS:
            raise ValueError(f"protocol_version must be one of {sorted(_PS_VERSIONS)}")
        self.handler = handler
        self.nodes = frozenset(nodes)
        self.protocol_version = protocol_version
        default_envelope = MAX_ENVELOPE_WINRM2 if protocol_version == "2.1" else MAX_ENVELOPE_WINRM3
        self.max_envelope_size = max_envelope_size or default_envelope
        self._username = username
        self._password = password
        self._shells: dict[str, ShellState] = {}
        self._idle_timeout = idle_timeout_seconds  # WinRM's default IdleTimeOut: 2 hours
        self._clock = clock
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._serving = threading.Event()
        self._thread: threading.Thread | None = None
        server_class = IPv6Server if address.version == 6 else IPv4Server
        self._http = server_class((host, port), RequestHandler)
        self._http.winrm = self
        self.host = host
        self.port: int = self._http.server_address[1]

    def url(self, node: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/{node}/wsman"

    def start(self) -> None:
        self._serving.set()
        self._thread = threading.Thread(target=self.serve_forever, name="winrm-peer", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self._serving.set()
        self._http.serve_forever(poll_interval=0.05)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            self._drop_shell(shell)
        if self._serving.is_set():
            self._http.shutdown()  # blocks until serve_forever returns, so only when serving
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def drop_shells(self, node: str | None = None) -> int:
        """Forget open shells (all, or one node's), as a reboot or idle timeout would."""
        with self._lock:
            gone = [s for s in self._shells.values() if node is None or s.node == node]
            for shell in gone:
                del self._shells[shell.shell_id]
        for shell in gone:
            self._drop_shell(shell)
        return len(gone)

    def __enter__(self) -> WinRMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # authentication -------------------------------------------------------------------
    def authenticate(self, header: str | None) -> str | None:
        """The user name when ``header`` is valid Basic auth for our account, else None."""
        if not header or not header.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        user_ok = hmac.compare_digest(user.encode(), self._username.encode())
        password_ok = hmac.compare_digest(password.encode(), self._password.encode())
        return user if user_ok and password_ok else None

    # WSMan actions --------------------------------------------------------------------
    def dispatch(self, node: str, username: str, request: soap.Request) -> bytes:
        if request.action == soap.ACTION_GET and request.resource_uri.startswith(soap.CONFIG_URI):
            return self._get_config(request)
        if request.action == soap.ACTION_CREATE:
            return self._create(node, username, request)
        shell = self._shell(request, node)
        if request.max_envelope_size:
            shell.client_envelope_size = request.max_envelope_size
        actions: dict[str, Callable[[ShellState, soap.Request], bytes]] = {
            soap.ACTION_COMMAND: self._command,
            soap.ACTION_SEND: self._send,
            soap.ACTION_RECEIVE: self._receive,
            soap.ACTION_SIGNAL: self._signal,
            soap.ACTION_DELETE: self._delete,
            soap.ACTION_GET: self._get_shell,
        }
        action = actions.get(request.action)
        if action is None:
            raise soap.SoapError(soap.FAULT_INVALID, f"unsupported action {request.action}")
        return action(shell, request)

    def _shell(self, request: soap.Request, node: str) -> ShellState:
        self._expire_idle_shells()
        with self._lock:
            shell = self._shells.get(request.shell_id or "")
            if shell is not None:
                shell.last_used = self._clock()
        if shell is None or shell.node != node:
            raise soap.SoapError(
                soap.FAULT_SHELL_NOT_FOUND,
                f"The request for the Windows Remote Shell with ShellId {request.shell_id} failed "
                "because the shell was not found on the server.",
                subcode="w:InvalidSelectors",
            )
        return shell

    def _get_config(self, request: soap.Request) -> bytes:
        envelope, body = soap.response(request)
        config = soap.sub(body, "cfg", "Config")
        soap.sub(config, "cfg", "MaxEnvelopeSizekb", str(self.max_envelope_size // 1024))
        return soap.serialize(envelope)

    def _new_pool(self) -> ServerRunspacePool:
        ps_version, build, clr = _PS_VERSIONS[self.protocol_version]
        pool = ServerRunspacePool(
            application_private_data={
                "PSVersionTable": {
                    "PSVersion": PSVersion(ps_version),
                    "PSRemotingProtocolVersion": PSVersion(self.protocol_version),
                    "SerializationVersion": PSVersion("1.1.0.1"),
                    "BuildVersion": PSVersion(build),
                    "CLRVersion": PSVersion(clr),
                    "WSManStackVersion": PSVersion(
                        "2.0" if self.max_envelope_size <= MAX_ENVELOPE_WINRM2 else "3.0"
                    ),
                }
            }
        )
        pool.our_capability = SessionCapability(
            PSVersion=PSVersion("2.0"),
            protocolversion=PSVersion(self.protocol_version),
            SerializationVersion=PSVersion("1.1.0.1"),
        )
        return pool

    def _expire_idle_shells(self) -> None:
        """Drop shells no client touched for the idle timeout (clients that vanished)."""
        cutoff = self._clock() - self._idle_timeout
        with self._lock:
            idle = [shell for shell in self._shells.values() if shell.last_used < cutoff]
            for shell in idle:
                del self._shells[shell.shell_id]
        for shell in idle:
            log.info("winrm.shell_expired", node=shell.node, shell_id=shell.shell_id)
            self._drop_shell(shell)

    def _create(self, node: str, username: str, request: soap.Request) -> bytes:
        self._expire_idle_shells()
        if not request.resource_uri.startswith(soap.POWERSHELL_URI):
            raise soap.SoapError(soap.FAULT_INVALID, f"unsupported resource {request.resource_uri}")
        shell_el = request.body.find("rsp:Shell", soap.NS)
        creation = None if shell_el is None else shell_el.find("pwsh:creationXml", soap.NS)
        if shell_el is None or creation is None or not creation.text:
            raise soap.SoapError(soap.FAULT_INVALID, "Create needs rsp:Shell with creationXml")
        shell_id = (shell_el.get("ShellId") or str(uuid.uuid4())).upper()
        shell = ShellState(
            shell_id=shell_id,
            node=node,
            username=username,
            pool=self._new_pool(),
            max_envelope_size=self.max_envelope_size,
            client_envelope_size=request.max_envelope_size or MAX_ENVELOPE_WINRM2,
        )
        with shell.cond:
            self._feed(shell, _b64(creation.text), None)
        shell.last_used = self._clock()
        with self._lock:
            self._shells[shell_id] = shell
        log.debug("winrm.shell_created", node=node, shell_id=shell_id, user=username)
        envelope, body = soap.response(request)
        created = soap.sub(body, "wst", "ResourceCreated")
        soap.sub(created, "wsa", "Address", soap.ANONYMOUS)
        refs = soap.sub(created, "wsa", "ReferenceParameters")
        soap.sub(refs, "wsman", "ResourceURI", request.resource_uri)
        selectors = soap.sub(refs, "wsman", "SelectorSet")
        soap.sub(selectors, "wsman", "Selector", shell_id, Name="ShellId")
        out = soap.sub(body, "rsp", "Shell")
        for name, value in (
            ("ShellId", shell_id),
            ("ResourceUri", request.resource_uri),
            ("Owner", username),
            ("InputStreams", "stdin pr"),
            ("OutputStreams", "stdout"),
        ):
            soap.sub(out, "rsp", name, value)
        return soap.serialize(envelope)

    def _command(self, shell: ShellState, request: soap.Request) -> bytes:
        line = request.body.find("rsp:CommandLine", soap.NS)
        if line is None:
            raise soap.SoapError(soap.FAULT_INVALID, "Command needs rsp:CommandLine")
        command_id = _uuid(line.get("CommandId") or str(uuid.uuid4()))
        arguments = line.find("rsp:Arguments", soap.NS)
        with shell.cond:
            # psrpcore needs the pipeline registered before its CreatePipeline message arrives.
            shell.pipelines[command_id] = PipelineRun(shell, ServerPipeline(shell.pool, command_id))
            if arguments is not None and arguments.text:
                self._feed(shell, _b64(arguments.text), command_id)
        envelope, body = soap.response(request)
        resp = soap.sub(body, "rsp", "CommandResponse")
        soap.sub(resp, "rsp", "CommandId", str(command_id).upper())
        return soap.serialize(envelope)

    def _send(self, shell: ShellState, request: soap.Request) -> bytes:
        streams = request.body.findall("rsp:Send/rsp:Stream", soap.NS)
        if not streams:
            raise soap.SoapError(soap.FAULT_INVALID, "Send needs rsp:Stream")
        with shell.cond:
            for stream in streams:
                command = stream.get("CommandId")
                self._feed(shell, _b64(stream.text or ""), _uuid(command) if command else None)
        envelope, body = soap.response(request)
        soap.sub(body, "rsp", "SendResponse")
        return soap.serialize(envelope)

    def _receive(self, shell: ShellState, request: soap.Request) -> bytes:
        desired = request.body.find("rsp:Receive/rsp:DesiredStream", soap.NS)
        if desired is None:
            raise soap.SoapError(soap.FAULT_INVALID, "Receive needs rsp:DesiredStream")
        command_attr = desired.get("CommandId")
        command_id = _uuid(command_attr) if command_attr else None
        deadline = time.monotonic() + min(request.operation_timeout, _RECEIVE_TIMEOUT_CAP)
        with shell.cond:
            pipeline = shell.pipelines.get(command_id) if command_id else None
            if command_id is not None and pipeline is None:
                raise soap.SoapError(soap.FAULT_INVALID, f"unknown CommandId {command_attr}")
            queue = shell.outgoing.setdefault(command_id, deque())
            while not queue and not (pipeline and pipeline.done):
                if shell.closed:  # deleted, dropped or expired while we waited
                    raise soap.SoapError(
                        soap.FAULT_SHELL_NOT_FOUND,
                        f"The shell {shell.shell_id} was closed.",
                        subcode="w:InvalidSelectors",
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing.is_set():
                    raise soap.SoapError(
                        soap.FAULT_OPERATION_TIMEOUT,
                        "The WS-Management service cannot complete the operation within the "
                        "time specified in OperationTimeout.",
                        subcode="w:TimedOut",
                    )
                shell.cond.wait(remaining)
            envelope, body = soap.response(request)
            resp = soap.sub(body, "rsp", "ReceiveResponse")
            budget = shell.envelope_budget()
            attrib = {"CommandId": str(command_id).upper()} if command_id else {}
            while queue:
                encoded = base64.b64encode(queue[0]).decode("ascii")
                if budget < len(encoded) and len(resp):
                    break  # the next fragment goes in the next Receive
                budget -= len(encoded) + 80
                queue.popleft()
                soap.sub(resp, "rsp", "Stream", encoded, Name="stdout", **attrib)
            if pipeline is not None and command_id is not None:
                finished = pipeline.done and not queue
                state = soap.STATE_DONE if finished else soap.STATE_RUNNING
                soap.sub(resp, "rsp", "CommandState", CommandId=attrib["CommandId"], State=state)
                if finished:  # the client has everything: free the command now
                    shell.forget(command_id)
        return soap.serialize(envelope)

    def _signal(self, shell: ShellState, request: soap.Request) -> bytes:
        signal = request.body.find("rsp:Signal", soap.NS)
        code = _text(signal, "rsp:Code") if signal is not None else None
        command_attr = signal.get("CommandId") if signal is not None else None
        if not code or not command_attr:
            raise soap.SoapError(soap.FAULT_INVALID, "Signal needs rsp:Code and CommandId")
        command_id = _uuid(command_attr)
        with shell.cond:
            pipeline = shell.pipelines.get(command_id)
            if code in soap.SIGNALS_STOP:
                if pipeline is not None:
                    pipeline.stop()
            elif code.lower() == soap.SIGNAL_TERMINATE.lower():
                if pipeline is not None:
                    pipeline.stop()
                shell.forget(command_id)  # a command already done and freed is no error
            else:
                raise soap.SoapError(soap.FAULT_INVALID, f"unsupported signal {code}")
            shell.pump()
        envelope, body = soap.response(request)
        soap.sub(body, "rsp", "SignalResponse")
        return soap.serialize(envelope)

    def _delete(self, shell: ShellState, request: soap.Request) -> bytes:
        with self._lock:
            self._shells.pop(shell.shell_id, None)
        self._drop_shell(shell)
        log.debug("winrm.shell_deleted", node=shell.node, shell_id=shell.shell_id)
        envelope, _ = soap.response(request)
        return soap.serialize(envelope)

    def _get_shell(self, shell: ShellState, request: soap.Request) -> bytes:
        envelope, body = soap.response(request)
        out = soap.sub(body, "rsp", "Shell")
        soap.sub(out, "rsp", "ShellId", shell.shell_id)
        soap.sub(out, "rsp", "Owner", shell.username)
        soap.sub(out, "rsp", "State", "Connected")
        return soap.serialize(envelope)

    def _drop_shell(self, shell: ShellState) -> None:
        with shell.cond:
            shell.closed = True
            for pipeline in shell.pipelines.values():
                pipeline.stop()
            shell.pipelines.clear()
            shell.outgoing.clear()
            shell.cond.notify_all()

    # PSRP ------------------------------------------------------------------------------
    def _feed(self, shell: ShellState, data: bytes, command_id: uuid.UUID | None) -> None:
        """Give received PSRP fragments to psrpcore and act on its events (``cond`` held)."""
        pool = shell.pool
        pool.receive_data(PSRPPayload(data, StreamType.default, command_id))
        try:
            while (event := pool.next_event()) is not None:
                if isinstance(
                    event, (SetMaxRunspacesEvent, SetMinRunspacesEvent, ResetRunspaceStateEvent)
                ):
                    pool.runspace_availability_response(event.ci, True)
                elif isinstance(event, GetAvailableRunspacesEvent):
                    pool.runspace_availability_response(event.ci, 1)
                elif isinstance(event, CreatePipelineEvent):
                    self._start_pipeline(shell, event.pipeline_id)
                elif isinstance(event, GetCommandMetadataEvent):
                    self._refuse_metadata(shell, event.pipeline_id)
        except soap.SoapError:
            raise
        except Exception as err:  # psrpcore rejects a malformed message
            raise soap.SoapError(soap.FAULT_INVALID, f"PSRP error: {err}") from None
        finally:
            shell.pump()

    def _start_pipeline(self, shell: ShellState, pipeline_id: uuid.UUID | None) -> None:
        pipeline = shell.pipelines.get(pipeline_id) if pipeline_id else None
        if pipeline is None or pipeline.pipeline.metadata is None:
            raise soap.SoapError(soap.FAULT_INVALID, f"no command for pipeline {pipeline_id}")
        metadata: Any = pipeline.pipeline.metadata
        invocation = Invocation(
            node=shell.node,
            username=shell.username,
            commands=[
                Command(
                    name=str(cmd.command_text),
                    parameters=list(cmd.parameters),
                    is_script=bool(cmd.is_script),
                )
                for cmd in metadata.commands
            ],
        )
        pipeline.pipeline.start()
        worker = threading.Thread(
            target=self._run_handler,
            args=(invocation, pipeline),
            name=f"winrm-pipeline-{pipeline_id}",
            daemon=True,
        )
        worker.start()

    def _refuse_metadata(self, shell: ShellState, pipeline_id: uuid.UUID | None) -> None:
        """GetCommandMetadata is not served: fail that pipeline at once rather than hang it."""
        run = shell.pipelines.get(pipeline_id) if pipeline_id else None
        if run is None:
            raise soap.SoapError(soap.FAULT_INVALID, f"no command for pipeline {pipeline_id}")
        run.pipeline.start()
        run.finish(
            TerminatingError(
                "GetCommandMetadata is not supported by this peer; run Get-Command instead.",
                "NotImplemented",
                "GetCommandMetadataNotSupported",
            )
        )

    def _run_handler(self, invocation: Invocation, pipeline: PipelineRun) -> None:
        error: BaseException | None = None
        try:
            self.handler(invocation, pipeline)
        except TerminatingError as err:
            error = err
        except Exception as err:
            error = err
        finally:
            # Always complete the pipeline, or the client's Receive waits forever.
            pipeline.finish(error)
        if error is not None and not isinstance(error, TerminatingError):
            log.warning(
                "winrm.handler_failed",
                node=invocation.node,
                command=invocation.commands[0].name if invocation.commands else None,
                error=f"{type(error).__name__}: {error}",
            )


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise soap.SoapError(soap.FAULT_INVALID, "stream data is not base64") from None


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise soap.SoapError(soap.FAULT_INVALID, f"invalid id {text!r}") from None


def _text(parent: Any, path: str) -> str | None:
    element = parent.find(path, soap.NS)
    return None if element is None or element.text is None else str(element.text).strip()
