"""One PowerShell runspace pool per Hyper-V node, and typed cmdlet calls with a deadline each.

Cmdlets are built with pypsrp's ``add_cmdlet``/``add_parameter``: values are CLIXML data, never
PowerShell text. Every cmdlet runs with ``-ErrorAction Stop`` and its error stream is checked.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import structlog
from pypsrp.complex_objects import PSInvocationState
from pypsrp.exceptions import (
    AuthenticationError,
    WinRMError,
    WinRMTransportError,
    WSManFaultError,
)
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from reconciler.providers.hyperv.credentials import ENV_PASSWORD, ENV_USER, Credentials
from reconciler.providers.hyperv.errors import (
    CommandError,
    ConnectionFailed,
    DeadlineExceeded,
    category_name,
)
from reconciler.providers.hyperv.wire import (
    WireError,
    check_params,
    decode,
    use_typed_serializer,
)

log = structlog.get_logger("reconciler.hyperv")

AUTH_METHODS = ("negotiate", "kerberos", "credssp", "ntlm", "basic", "certificate")
ENCRYPTIONS = ("auto", "always", "never")
_FAULT_SHELL_NOT_FOUND = 2150858843  # the pool's shell is gone (reboot, idle timeout)
_IDLE_CHECK_SECONDS = 60.0  # a pool unused this long is probed with is_alive() before reuse
_MIN_POLL_SECONDS = 0.05
_SCRIPT_HEADER = re.compile(r"^\s*\[CmdletBinding\(\)\]\s*param\s*\(", re.IGNORECASE)

WSManFactory = Callable[..., Any]


@dataclass(frozen=True)
class Endpoint:
    url: str  # https://hv01:5986/wsman or http://127.0.0.1:PORT/hv01/wsman
    auth: str = "negotiate"
    cert_validation: bool | str = True  # True, False or a CA bundle path
    encryption: str = "auto"
    certificate_pem: str | None = None
    certificate_key_pem: str | None = None
    negotiate_delegate: bool = False  # Kerberos delegation for cmdlets that reach other nodes

    def wsman_arguments(self) -> dict[str, Any]:
        """WSMan(...) keyword arguments, checked; raises ValueError naming the bad field."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {self.url!r}: expected http(s)://host[:port]/path")
        if self.auth not in AUTH_METHODS:
            raise ValueError(f"auth {self.auth!r}: expected one of {', '.join(AUTH_METHODS)}")
        if self.encryption not in ENCRYPTIONS:
            raise ValueError(f"encryption {self.encryption!r}: expected one of auto|always|never")
        ssl = parts.scheme == "https"
        arguments: dict[str, Any] = {
            "server": parts.hostname,
            "port": parts.port or (5986 if ssl else 5985),
            "path": parts.path.lstrip("/") or "wsman",
            "ssl": ssl,
            "auth": self.auth,
            "cert_validation": self.cert_validation,
            "encryption": self.encryption,
        }
        if self.auth == "certificate":
            arguments["certificate_pem"] = self.certificate_pem
            arguments["certificate_key_pem"] = self.certificate_key_pem
        if self.negotiate_delegate:
            arguments["negotiate_delegate"] = True
        return arguments


class NodeSession:
    """The runspace pool of one node: opened on first use, reused, reopened if it died."""

    def __init__(
        self,
        node: str,
        endpoint: Endpoint,
        credentials: Credentials | None,
        *,
        operation_timeout: int = 20,
        wsman_factory: WSManFactory = WSMan,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.endpoint = endpoint
        self._credentials = credentials
        self._operation_timeout = operation_timeout
        self._wsman_factory = wsman_factory
        self._clock = clock
        self._pool: RunspacePool | None = None
        self._last_used = 0.0
        self.round_trips = 0

    # public ---------------------------------------------------------------------------
    def call(
        self,
        cmdlet: str,
        params: Mapping[str, Any] | None = None,
        *,
        then: Sequence[tuple[str, Mapping[str, Any]]] = (),
        deadline_seconds: float = 120.0,
    ) -> list[Any]:
        """Run ``cmdlet [| then...]`` and return its decoded output, or raise CommandError."""
        stages = [(cmdlet, params or {}), *then]
        for name, stage_params in stages:
            check_params(stage_params, cmdlet=name)

        def build(ps: PowerShell) -> None:
            for name, stage_params in stages:
                ps.add_cmdlet(name)
                for key, value in stage_params.items():
                    ps.add_parameter(key, value)  # None is a switch
                ps.add_parameter("ErrorAction", "Stop")

        label = " | ".join(name for name, _ in stages)
        return self._run(label, cmdlet, build, deadline_seconds)

    def script(
        self, text: str, params: Mapping[str, Any], *, deadline_seconds: float = 120.0
    ) -> list[Any]:
        """Run a constant ``[CmdletBinding()] param(...)`` script shipped with the package;
        values go as parameters, never into ``text``."""
        if not _SCRIPT_HEADER.match(text):
            raise ValueError("script text must start with [CmdletBinding()] param(...)")
        check_params(params, cmdlet="script")

        def build(ps: PowerShell) -> None:
            ps.add_script(text)
            for key, value in params.items():
                ps.add_parameter(key, value)
            ps.add_parameter("ErrorAction", "Stop")

        return self._run("script", "script", build, deadline_seconds)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            pool.close()
        except (WinRMError, requests.RequestException) as err:
            log.info("hyperv.pool_close_failed", node=self.node, error=str(err))

    # pool -----------------------------------------------------------------------------
    def _open(self) -> RunspacePool:
        try:
            arguments = self.endpoint.wsman_arguments()
        except ValueError as err:
            raise ConnectionFailed(f"{self.node}: bad endpoint: {err}") from None
        user = self._credentials.username if self._credentials else None
        wsman = self._wsman_factory(
            username=user,
            password=self._credentials.password if self._credentials else None,
            operation_timeout=self._operation_timeout,
            read_timeout=self._operation_timeout + 10,
            **arguments,
        )
        pool = RunspacePool(wsman, configuration_name="Microsoft.PowerShell")
        use_typed_serializer(pool)
        try:
            pool.open()
        except Exception as err:
            wsman.close()
            raise self._connection_failed(err) from None
        log.info("hyperv.pool_opened", node=self.node, url=self.endpoint.url, user=user)
        return pool

    def _connection_failed(self, err: Exception) -> ConnectionFailed:
        user = self._credentials.username if self._credentials else "(none)"
        where = f"node {self.node} ({self.endpoint.url})"
        if isinstance(err, AuthenticationError):
            return ConnectionFailed(
                f"authentication failed for user {user!r} on {where} with {self.endpoint.auth}"
                f" auth; check {ENV_USER}/{ENV_PASSWORD} or the secrets file"
            )
        if isinstance(err, requests.exceptions.SSLError):
            return ConnectionFailed(
                f"TLS verification failed for {where}; give the CA bundle (cert_validation)"
            )
        if isinstance(err, requests.exceptions.ConnectionError):
            return ConnectionFailed(f"cannot reach {where}: connection refused or no route")
        if isinstance(err, requests.exceptions.Timeout):
            return ConnectionFailed(f"{where} did not answer in time")
        if isinstance(err, WinRMTransportError):
            return ConnectionFailed(f"{where} answered HTTP {err.code}: is WinRM listening there?")
        if isinstance(err, WSManFaultError):
            return ConnectionFailed(f"{where} refused the session: {err.reason or err.code}")
        return ConnectionFailed(f"{where}: {type(err).__name__}: {err}")

    def _ready_pool(self) -> RunspacePool:
        pool = self._pool
        if pool is not None and self._clock() - self._last_used > _IDLE_CHECK_SECONDS:
            try:
                alive = pool.is_alive(timeout=5)
            except (WinRMError, requests.RequestException):
                alive = False
            if not alive:
                log.info("hyperv.pool_reopen", node=self.node, reason="not alive after idle")
                self._discard_pool()
                pool = None
        if pool is None:
            pool = self._pool = self._open()
        return pool

    # pipelines ------------------------------------------------------------------------
    def _run(
        self,
        label: str,
        cmdlet: str,
        build: Callable[[PowerShell], None],
        deadline_seconds: float,
    ) -> list[Any]:
        deadline = self._clock() + deadline_seconds
        ps = self._begin(build)
        self.round_trips += 1
        try:
            while ps.state == PSInvocationState.RUNNING:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    ps.stop()
                    raise DeadlineExceeded(label, deadline_seconds, node=self.node)
                wait = max(_MIN_POLL_SECONDS, min(float(self._operation_timeout), remaining))
                ps.poll_invoke(timeout=math.ceil(wait * 1000) / 1000)  # type: ignore[arg-type]
        except (requests.RequestException, WinRMError) as err:
            self._discard_pool()  # whatever state the pool is in, do not reuse it
            raise self._connection_failed(err) from None
        finally:
            self._last_used = self._clock()
        self._close_pipeline(ps)
        for warning in ps.streams.warning:
            text = getattr(warning, "message", None) or str(warning)
            log.warning("hyperv.cmdlet_warning", node=self.node, cmdlet=label, message=text)
        if ps.streams.error or ps.had_errors or ps.state != PSInvocationState.COMPLETED:
            raise self._command_error(label, cmdlet, ps)
        try:
            return [decode(item) for item in ps.output]
        except WireError as err:
            raise CommandError(
                label,
                f"output not readable: {err}",
                "InvalidData",
                "ReconcilerUndecodableOutput",
                node=self.node,
            ) from None

    def _begin(self, build: Callable[[PowerShell], None]) -> PowerShell:
        """Start the pipeline; a pool found dead before anything ran is reopened once."""
        for attempt in (1, 2):
            pool = self._ready_pool()
            ps = PowerShell(pool)
            build(ps)
            try:
                ps.begin_invoke()
                return ps
            except WSManFaultError as err:
                self._discard_pool()
                if err.code != _FAULT_SHELL_NOT_FOUND or attempt == 2:
                    raise self._connection_failed(err) from None
                log.info("hyperv.pool_reopen", node=self.node, reason="shell not found")
            except (requests.RequestException, WinRMError) as err:
                self._discard_pool()
                raise self._connection_failed(err) from None
        raise AssertionError("unreachable")

    def _discard_pool(self) -> None:
        """Forget a dead pool without talking to its shell; free its HTTP connections."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.connection.close()

    def _close_pipeline(self, ps: PowerShell) -> None:
        if ps.state in (PSInvocationState.STOPPED, PSInvocationState.STOPPING):
            return  # stop() already told the server
        try:
            ps.close()  # Signal terminate: frees the command on the server
        except (WinRMError, requests.RequestException) as err:
            log.info("hyperv.pipeline_close_failed", node=self.node, error=str(err))

    def _command_error(self, label: str, cmdlet: str, ps: PowerShell) -> CommandError:
        if not ps.streams.error:
            state = {PSInvocationState.STOPPED: "was stopped"}.get(ps.state, "failed")
            return CommandError(
                label,
                f"the pipeline {state} without an error record",
                "NotSpecified",
                "",
                node=self.node,
            )
        record = ps.streams.error[0]
        message = str(record) if str(record) else "(no message)"
        return CommandError(
            getattr(record, "invocation_name", None) or cmdlet,
            message,
            category_name(getattr(record, "category", None)),
            str(getattr(record, "fq_error", "") or ""),
            getattr(record, "target_name", None) or None,
            node=self.node,
        )


class SessionPool:
    """Node name -> NodeSession, created on first use; ``close_all`` at the end of a run."""

    def __init__(
        self,
        endpoint_for: Callable[[str], Endpoint],
        credentials: Credentials | None,
        *,
        operation_timeout: int = 20,
        session_factory: Callable[..., NodeSession] = NodeSession,
    ) -> None:
        self._endpoint_for = endpoint_for
        self._credentials = credentials
        self._operation_timeout = operation_timeout
        self._session_factory = session_factory
        self._sessions: dict[str, NodeSession] = {}

    def get(self, node: str) -> NodeSession:
        if node not in self._sessions:
            self._sessions[node] = self._session_factory(
                node,
                self._endpoint_for(node),
                self._credentials,
                operation_timeout=self._operation_timeout,
            )
        return self._sessions[node]

    @property
    def round_trips(self) -> int:
        return sum(s.round_trips for s in self._sessions.values())

    def close_all(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()
