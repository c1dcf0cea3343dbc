"""The hyperv provider's remoting plumbing: NodeSession over a real pypsrp client against the
WinRM peer's transport on loopback, the wire types, the error table and the credentials."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from psrpcore.types import (
    PSDateTime,
    PSDuration,
    PSEnumBase,
    PSInt64,
    PSList,
    PSNoteProperty,
    PSObject,
    PSType,
)
from pypsrp.wsman import WSMan

from reconciler.providers.hyperv.credentials import (
    Credentials,
    CredentialsError,
    load_credentials,
    redact_processor,
)
from reconciler.providers.hyperv.errors import (
    CommandError,
    ConnectionFailed,
    DeadlineExceeded,
    category_name,
    classify,
)
from reconciler.providers.hyperv.session import Endpoint, NodeSession, SessionPool
from reconciler.providers.hyperv.wire import (
    WireError,
    check_params,
    decode,
    i32,
    i64,
    parse_datetime,
    parse_timespan,
    u64,
)
from reconciler.providers.sim.winrm.transport import (
    Invocation,
    PipelineWriter,
    TerminatingError,
    WinRMServer,
)

USER, PASSWORD = "hv-operator", "Tr0ub4dor&3-horse"
INJECTION = "'; Remove-VM -Force *; '"


@PSType(["Microsoft.HyperV.PowerShell.VMState"])
class VMState(PSEnumBase):
    Off = 3
    Running = 2


def hyperv_object(type_name: str, **props: Any) -> PSObject:
    obj = PSObject()
    obj.PSObject.type_names = [type_name, "System.Object"]
    for name, value in props.items():
        obj.PSObject.extended_properties.append(PSNoteProperty(name, value))
    return obj


def typed_list(item_type: str, items: list[Any]) -> PSList:
    values = PSList(items)
    values.PSObject.type_names = [
        f"System.Collections.Generic.List`1[[{item_type}, Microsoft.HyperV.PowerShell.Objects]]",
        "System.Object",
    ]
    return values


class Peer:
    """The test handler: made-up cmdlets in Hyper-V's shapes, recording what arrived."""

    def __init__(self) -> None:
        self.invocations: list[Invocation] = []
        self.stopped = threading.Event()

    def __call__(self, invocation: Invocation, writer: PipelineWriter) -> None:
        self.invocations.append(invocation)
        name = invocation.commands[0].name
        if name == "Get-VM":
            drive = hyperv_object(
                "Microsoft.HyperV.PowerShell.HardDiskDrive", Path="C:\\vm01.vhdx", Number=0
            )
            writer.write_output(
                hyperv_object(
                    "Microsoft.HyperV.PowerShell.VirtualMachine",
                    Name="vm01",
                    State=VMState.Running,
                    MemoryStartup=PSInt64(4 * 2**30),
                    Uptime=PSDuration(hours=1, minutes=2, seconds=3, microseconds=500000),
                    CreationTime=PSDateTime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC),
                    HardDrives=typed_list("Microsoft.HyperV.PowerShell.HardDiskDrive", [drive]),
                    Notes=INJECTION,
                )
            )
        elif name == "Get-Missing":
            writer.write_error(
                "Hyper-V was unable to find a virtual machine with name 'nope'.",
                category="InvalidArgument",
                fq_error_id="InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM",
                target="nope",
            )
        elif name == "Start-VM":
            raise TerminatingError(
                "The operation cannot be performed while the object is in its current state.",
                "InvalidOperation",
                "InvalidState,Microsoft.HyperV.PowerShell.Commands.StartVM",
                "vm01",
            )
        elif name == "Move-ClusterVirtualMachineRole":
            if writer.wait_stopped(10):
                self.stopped.set()
        elif name == "Get-Blob":
            for _ in range(12):
                writer.write_output("b" * 60_000)
        elif name == "Echo":
            for command in invocation.commands:
                for key, value in command.parameters:
                    writer.write_output(f"{command.name} -{key} {type(value).__name__} {value}")
        elif name == "Warn":
            writer.write_warning("watch out")
        elif name == "Get-Odd":
            odd = PSObject()
            odd.PSObject.type_names = ["System.String"]  # a type pypsrp maps to no reader
            writer.write_output(odd)


def serve(peer: Peer, **kwargs: Any) -> WinRMServer:
    server = WinRMServer(peer, ["hv01", "hv02"], username=USER, password=PASSWORD, **kwargs)
    server.start()
    return server


@pytest.fixture(autouse=True)
def default_structlog() -> None:
    # Other tests configure structlog (the CLI filters below WARNING); capture needs all levels.
    structlog.reset_defaults()


@pytest.fixture
def peer() -> Peer:
    return Peer()


@pytest.fixture
def server(peer: Peer) -> Iterator[WinRMServer]:
    winrm = serve(peer)
    yield winrm
    winrm.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session_for(
    server: WinRMServer, node: str = "hv01", password: str = PASSWORD, **kwargs: Any
) -> NodeSession:
    endpoint = Endpoint(url=server.url(node), auth="basic", encryption="never")
    return NodeSession(node, endpoint, Credentials(USER, password), **kwargs)


@pytest.fixture
def session(server: WinRMServer) -> Iterator[NodeSession]:
    node_session = session_for(server)
    yield node_session
    node_session.close()


class TestCall:
    """A cmdlet call: typed parameters out, -ErrorAction Stop on each cmdlet, decoded data back."""

    def test_get_vm_decodes_to_plain_data(self, session: NodeSession) -> None:
        [vm] = session.call("Get-VM", {"Name": "vm01"})
        assert vm == {
            "Name": "vm01",
            "State": "Running",
            "MemoryStartup": 4294967296,
            "Uptime": dt.timedelta(hours=1, minutes=2, seconds=3.5),
            "CreationTime": dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC),
            "HardDrives": [
                {
                    "Path": "C:\\vm01.vhdx",
                    "Number": 0,
                    "__types__": ["Microsoft.HyperV.PowerShell.HardDiskDrive", "System.Object"],
                }
            ],
            "Notes": INJECTION,
            "__types__": ["Microsoft.HyperV.PowerShell.VirtualMachine", "System.Object"],
        }
        assert session.round_trips == 1

    def test_every_cmdlet_gets_error_action_stop_and_typed_values(
        self, session: NodeSession, peer: Peer
    ) -> None:
        out = session.call(
            "Echo",
            {"SizeBytes": u64(60 * 2**30), "VlanId": i32(10), "Memory": i64(2**33), "Wait": None},
            then=[("Select-Object", {"Property": ["Name", "State"]})],
        )
        assert out == [
            "Echo -SizeBytes PSUInt64 64424509440",
            "Echo -VlanId PSInt 10",
            "Echo -Memory PSInt64 8589934592",
            "Echo -Wait NoneType None",
            "Echo -ErrorAction PSString Stop",
            "Select-Object -Property PSList ['Name', 'State']",
            "Select-Object -ErrorAction PSString Stop",
        ]
        assert [c.name for c in peer.invocations[0].commands] == ["Echo", "Select-Object"]

    def test_bare_big_int_is_refused_before_any_round_trip(self, session: NodeSession) -> None:
        with pytest.raises(WireError, match=r"Resize-VHD -SizeBytes: 64424509440 does not fit"):
            session.call("Resize-VHD", {"Path": "C:\\d.vhdx", "SizeBytes": 60 * 2**30})
        with pytest.raises(WireError, match="float"):
            session.call("Set-VM", {"Ratio": 0.5})
        assert session.round_trips == 0

    def test_injection_text_arrives_as_one_string(self, session: NodeSession, peer: Peer) -> None:
        session.call("Echo", {"Name": INJECTION})
        [command] = peer.invocations[0].commands
        assert command.parameters == [("Name", INJECTION), ("ErrorAction", "Stop")]

    def test_pool_is_reused(self, session: NodeSession, server: WinRMServer) -> None:
        for _ in range(3):
            session.call("Echo", {"Name": "x"})
        assert session.round_trips == 3
        assert len(server._shells) == 1

    def test_large_output(self, session: NodeSession) -> None:
        assert session.call("Get-Blob") == ["b" * 60_000] * 12

    def test_warnings_are_logged(self, session: NodeSession) -> None:
        with structlog.testing.capture_logs() as logs:
            assert session.call("Warn") == []
        assert {"event": "hyperv.cmdlet_warning", "message": "watch out"}.items() <= next(
            e for e in logs if e["event"] == "hyperv.cmdlet_warning"
        ).items()


class TestErrors:
    """Error records become CommandError with the cmdlet's own message and a status."""

    def test_non_terminating_error_still_fails_the_call(self, session: NodeSession) -> None:
        with pytest.raises(CommandError) as err:
            session.call("Get-Missing", {"Name": "nope"})
        assert err.value.message == (
            "Hyper-V was unable to find a virtual machine with name 'nope'."
        )
        assert err.value.category == "InvalidArgument"
        assert err.value.fq_error_id == (
            "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"
        )
        assert err.value.target == "nope"
        assert err.value.status == "permanent_error"
        assert "Get-Missing on hv01: Hyper-V was unable" in str(err.value)

    def test_terminating_error(self, session: NodeSession) -> None:
        with pytest.raises(CommandError) as err:
            session.call("Start-VM", {"Name": "vm01"})
        assert err.value.status == "precondition_failed"
        assert err.value.cmdlet == "Start-VM"
        assert session.call("Echo", {"Name": "after"})  # the pool survives

    def test_undecodable_output_is_a_command_error(self, session: NodeSession) -> None:
        with pytest.raises(CommandError) as err:
            session.call("Get-Odd")
        assert err.value.fq_error_id == "ReconcilerUndecodableOutput"
        assert err.value.status == "permanent_error"
        assert "undecoded CLIXML" in err.value.message

    def test_deadline_stops_the_pipeline(self, session: NodeSession, peer: Peer) -> None:
        with pytest.raises(DeadlineExceeded) as err:
            session.call("Move-ClusterVirtualMachineRole", {"Name": "vm01"}, deadline_seconds=0.3)
        assert err.value.status == "transient_error"
        assert peer.stopped.wait(5)
        assert session.call("Echo", {"Name": "after"})

    # The table stated by hand: (category, FullyQualifiedErrorId) -> status.
    @pytest.mark.parametrize(
        ("category", "fqid", "status"),
        [
            (
                "ObjectNotFound",
                "VMNotFound,Microsoft.HyperV.PowerShell.Commands.GetVM",
                "precondition_failed",
            ),
            (
                "InvalidOperation",
                "InvalidState,Microsoft.HyperV.PowerShell.Commands.StartVM",
                "precondition_failed",
            ),
            ("ResourceExists", "DuplicateSwitch,Test", "precondition_failed"),
            ("ResourceBusy", "ClusterNodeBusy,Test", "transient_error"),
            ("OperationTimeout", "Timeout,Test", "transient_error"),
            ("ResourceUnavailable", "NodeDown,Test", "transient_error"),
            ("ConnectionError", "Lost,Test", "transient_error"),
            ("OperationStopped", "PipelineStopped", "transient_error"),
            (
                "InvalidArgument",
                "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM",
                "permanent_error",
            ),
            ("InvalidData", "Bad,Test", "permanent_error"),
            ("NotSpecified", "PeerHandlerFailed", "permanent_error"),
            ("PermissionDenied", "AccessDenied,Test", "permanent_error"),
            ("ObjectNotFound", "CommandNotFoundException", "permanent_error"),
            (
                "InvalidArgument",
                "ParameterArgumentTransformationError,Microsoft.HyperV.PowerShell.Commands.ResizeVHD",
                "permanent_error",
            ),
            (
                "InvalidOperation",
                "AccessDenied,Microsoft.FailoverClusters.PowerShell.AddClusterNodeCommand",
                "permanent_error",
            ),
        ],
    )
    def test_status_table(self, category: str, fqid: str, status: str) -> None:
        assert classify(category, fqid) == status

    @pytest.mark.parametrize(
        ("number", "name"), [(0, "NotSpecified"), (7, "InvalidOperation"), (13, "ObjectNotFound"),
                             (19, "ResourceBusy"), (31, "NotEnabled"), (99, "NotSpecified")]
    )  # fmt: skip
    def test_category_numbers(self, number: int, name: str) -> None:
        assert category_name(number) == name


class TestConnection:
    """Connection failures are ConnectionFailed with one line naming the node."""

    def test_wrong_password(self, server: WinRMServer) -> None:
        bad = session_for(server, password="wrong-password")
        with pytest.raises(ConnectionFailed) as err:
            bad.call("Get-VM")
        message = str(err.value)
        assert message == (
            f"authentication failed for user 'hv-operator' on node hv01 ({server.url('hv01')})"
            " with basic auth; check RECONCILER_HYPERV_USER/RECONCILER_HYPERV_PASSWORD or the"
            " secrets file"
        )
        assert "\n" not in message and "wrong-password" not in message

    def test_unreachable(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        endpoint = Endpoint(url=f"http://127.0.0.1:{port}/wsman", auth="basic", encryption="never")
        with pytest.raises(ConnectionFailed, match=r"cannot reach node hv01"):
            NodeSession("hv01", endpoint, Credentials(USER, PASSWORD)).call("Get-VM")

    def test_tls_is_verified_by_default(self, server: WinRMServer) -> None:
        endpoint = Endpoint(url=f"https://127.0.0.1:{server.port}/hv01/wsman", auth="basic")
        assert endpoint.wsman_arguments()["cert_validation"] is True
        with pytest.raises(ConnectionFailed, match=r"TLS verification failed for node hv01"):
            NodeSession("hv01", endpoint, Credentials(USER, PASSWORD)).call("Get-VM")

    def test_protocol_2_1_peer(self, peer: Peer) -> None:
        old = serve(peer, protocol_version="2.1")
        try:
            node = session_for(old)
            [vm] = node.call("Get-VM")
            assert vm["State"] == "Running"
            node.close()
        finally:
            old.close()

    def test_dead_pool_is_reopened_after_idle(self, server: WinRMServer) -> None:
        clock = FakeClock()
        node = session_for(server, clock=clock)
        node.call("Echo", {"Name": "one"})
        server.drop_shells("hv01")
        clock.now += 3600
        with structlog.testing.capture_logs() as logs:
            assert node.call("Echo", {"Name": "two"})
        assert any(e["event"] == "hyperv.pool_reopen" for e in logs)
        node.close()

    def test_shell_gone_without_idle_is_reopened_once(self, server: WinRMServer) -> None:
        node = session_for(server)
        node.call("Echo", {"Name": "one"})
        server.drop_shells("hv01")
        assert node.call("Echo", {"Name": "two"}) == [
            "Echo -Name PSString two",
            "Echo -ErrorAction PSString Stop",
        ]
        node.close()

    def test_session_pool(self, server: WinRMServer) -> None:
        pool = SessionPool(
            lambda node: Endpoint(url=server.url(node), auth="basic", encryption="never"),
            Credentials(USER, PASSWORD),
        )
        assert pool.get("hv01") is pool.get("hv01")
        pool.get("hv01").call("Echo", {"Name": "a"})
        pool.get("hv02").call("Echo", {"Name": "b"})
        assert pool.round_trips == 2
        pool.close_all()
        assert server._shells == {}


class TestEndpoint:
    """Endpoint fields become pypsrp WSMan arguments; each auth passes through."""

    def test_https_defaults(self) -> None:
        args = Endpoint(url="https://hv01.corp.example:5986/wsman").wsman_arguments()
        assert args == {
            "server": "hv01.corp.example",
            "port": 5986,
            "path": "wsman",
            "ssl": True,
            "auth": "negotiate",
            "cert_validation": True,
            "encryption": "auto",
        }

    def test_ca_bundle_and_certificate_auth(self) -> None:
        args = Endpoint(
            url="https://hv01/wsman",
            auth="certificate",
            cert_validation="/etc/ssl/corp-ca.pem",
            certificate_pem="/k/cert.pem",
            certificate_key_pem="/k/key.pem",
        ).wsman_arguments()
        assert args["port"] == 5986
        assert args["cert_validation"] == "/etc/ssl/corp-ca.pem"
        assert (args["certificate_pem"], args["certificate_key_pem"]) == (
            "/k/cert.pem",
            "/k/key.pem",
        )

    @pytest.mark.parametrize("auth", ["negotiate", "kerberos", "credssp", "ntlm", "basic"])
    def test_pypsrp_accepts_each_auth(self, auth: str) -> None:
        args = Endpoint(url="https://hv01/wsman", auth=auth).wsman_arguments()
        wsman = WSMan(username=USER, password=PASSWORD, **args)  # builds; connects lazily
        assert wsman.transport.auth == auth
        assert wsman.transport.cert_validation is True

    @pytest.mark.parametrize(
        ("field", "endpoint"),
        [
            ("url", Endpoint(url="ftp://hv01/wsman")),
            ("auth", Endpoint(url="https://hv01/wsman", auth="digest")),
            ("encryption", Endpoint(url="https://hv01/wsman", encryption="sometimes")),
        ],
    )
    def test_bad_fields_are_named(self, field: str, endpoint: Endpoint) -> None:
        with pytest.raises(ValueError, match=f"^{field} "):
            endpoint.wsman_arguments()


class TestWire:
    """Typed numbers out; plain data back, stated by hand."""

    def test_wrappers(self) -> None:
        assert (u64(2**40).tag, u64(2**40).value) == ("U64", 2**40)
        assert i64(-5).tag == "I64" and i32(4094).tag == "I32"
        for bad in (lambda: u64(-1), lambda: i32(2**31), lambda: u64(True)):  # type: ignore[arg-type]
            with pytest.raises(WireError):
                bad()

    def test_check_params(self) -> None:
        check_params({"VlanId": 10, "Size": u64(2**40), "Force": None, "On": True, "L": [1, 2]})
        with pytest.raises(WireError, match="-Ids"):
            check_params({"Ids": [1, 2**31]}, cmdlet="Set-Thing")
        with pytest.raises(WireError):
            check_params({"Min": -(2**31) - 1})

    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("2024-01-02T03:04:05.1234567+01:00",
             dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))),
            ("2024-01-02T03:04:05Z", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
            ("2024-01-02T03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5)),
        ],
    )  # fmt: skip
    def test_datetimes(self, text: str, value: dt.datetime) -> None:
        assert parse_datetime(text) == value

    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("PT1H2M3.5S", dt.timedelta(hours=1, minutes=2, seconds=3.5)),
            ("P2DT3H", dt.timedelta(days=2, hours=3)),
            ("-PT5S", dt.timedelta(seconds=-5)),
            ("PT0S", dt.timedelta(0)),
        ],
    )
    def test_timespans(self, text: str, value: dt.timedelta) -> None:
        assert parse_timespan(text) == value

    def test_plain_strings_stay_strings(self) -> None:
        # Only <DT>/<TS> elements become datetimes; a VM named like a duration stays a name.
        assert decode(["PT5S", "2024-01-02T03:04:05"]) == ["PT5S", "2024-01-02T03:04:05"]

    def test_undecoded_clixml_fails_loudly(self) -> None:
        import xml.etree.ElementTree as ET

        from reconciler.providers.hyperv.wire import TypedSerializer

        # An object whose only type pypsrp maps to a tag it cannot read: it returns the XML.
        unknown = ET.fromstring('<Obj RefId="0"><TN RefId="0"><T>System.String</T></TN></Obj>')
        with pytest.raises(WireError, match="undecoded CLIXML"):
            decode(TypedSerializer().deserialize(unknown))
        assert decode("<Obj>notes</Obj>") == "<Obj>notes</Obj>"  # a plain string stays one


class TestCredentials:
    """From the environment or a private file; never shown, never logged."""

    def test_from_env(self) -> None:
        env = {"RECONCILER_HYPERV_USER": "CORP\\svc", "RECONCILER_HYPERV_PASSWORD": PASSWORD}
        creds = load_credentials(env, None)
        assert (creds.username, creds.password) == ("CORP\\svc", PASSWORD)
        assert PASSWORD not in repr(creds) and PASSWORD not in str(creds)

    def test_half_set_env_is_an_error(self) -> None:
        with pytest.raises(CredentialsError, match="RECONCILER_HYPERV_PASSWORD is not set"):
            load_credentials({"RECONCILER_HYPERV_USER": "svc"}, None)

    def test_nothing_set(self) -> None:
        with pytest.raises(CredentialsError, match="no credentials"):
            load_credentials({}, None)

    def test_private_secrets_file(self, tmp_path: Path) -> None:
        path = tmp_path / "secrets.yaml"
        path.write_text(f"username: svc\npassword: '{PASSWORD}'\n")
        path.chmod(0o600)
        assert load_credentials({}, path) == Credentials("svc", PASSWORD)

    @pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
    def test_readable_secrets_file_is_refused(self, tmp_path: Path, mode: int) -> None:
        path = tmp_path / "secrets.yaml"
        path.write_text(f"username: svc\npassword: '{PASSWORD}'\n")
        path.chmod(mode)
        with pytest.raises(CredentialsError, match="chmod 600") as err:
            load_credentials({}, path)
        assert PASSWORD not in str(err.value)

    def test_bad_secrets_file_does_not_echo(self, tmp_path: Path) -> None:
        path = tmp_path / "secrets.yaml"
        path.write_text(f"username: svc\npassword: [{PASSWORD}\n")
        os.chmod(path, 0o600)
        with pytest.raises(CredentialsError, match="not valid YAML") as err:
            load_credentials({}, path)
        assert PASSWORD not in str(err.value)

    def test_redact_processor(self) -> None:
        redact = redact_processor([PASSWORD, ""])
        event = {
            "event": f"login {PASSWORD}",
            "nested": {"list": [f"x{PASSWORD}y", 3], "n": None},
            "error": ValueError(f"bad {PASSWORD}"),
        }
        assert redact(None, "info", event) == {
            "event": "login ***",
            "nested": {"list": ["x***y", 3], "n": None},
            "error": "bad ***",
        }

    def test_no_log_line_holds_the_password(self, server: WinRMServer) -> None:
        with structlog.testing.capture_logs() as logs:
            node = session_for(server)
            node.call("Get-VM")
            node.call("Warn")
            with pytest.raises(CommandError):
                node.call("Get-Missing")
            node.close()
            with pytest.raises(ConnectionFailed):
                session_for(server, password=PASSWORD + "x").call("Get-VM")
        assert any(e["event"] == "hyperv.pool_opened" for e in logs)
        assert PASSWORD not in repr(logs)


class TestScriptAndLogging:
    """Constant param() scripts only; the CLI's log set-up redacts the password."""

    SCRIPT = "[CmdletBinding()]\nparam([string]$Name)\nGet-Item -LiteralPath $Name\n"

    def test_script_goes_as_script_with_typed_parameters(
        self, session: NodeSession, peer: Peer
    ) -> None:
        session.script(self.SCRIPT, {"Name": INJECTION, "Size": u64(2**40)})
        [command] = peer.invocations[0].commands
        assert command.is_script and command.name == self.SCRIPT
        assert command.parameters[0] == ("Name", INJECTION)
        assert type(command.parameters[1][1]).__name__ == "PSUInt64"
        assert command.parameters[2] == ("ErrorAction", "Stop")

    def test_script_without_cmdletbinding_is_refused(self, session: NodeSession) -> None:
        with pytest.raises(ValueError, match="CmdletBinding"):
            session.script("Get-VM -Name " + INJECTION, {})
        assert session.round_trips == 0

    def test_install_redaction_on_the_cli_log_setup(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from reconciler.cli.logs import configure
        from reconciler.providers.hyperv.credentials import install_redaction

        try:
            configure("json")
            install_redaction([PASSWORD])
            structlog.get_logger("t").info("hyperv.test", detail=f"pw={PASSWORD}")
            err = capsys.readouterr().err
        finally:
            structlog.reset_defaults()  # the CLI set-up printed to capsys' stderr
        assert '"detail": "pw=***"' in err and PASSWORD not in err


class TestTypedSerializer:
    """Reads primitives exactly as pypsrp does; only DT/TS and unknown lists differ."""

    CLIXML = (
        '<Obj RefId="0"><TN RefId="0"><T>Microsoft.HyperV.PowerShell.VirtualMachine</T>'
        "<T>System.Object</T></TN><Props>"
        '<S N="Name">vm_x000A_01</S><S N="Empty" /><B N="On">true</B><By N="By">7</By>'
        '<I32 N="Cpu">4</I32><U64 N="Mem">8589934592</U64><I64 N="Neg">-5</I64>'
        '<Db N="Ratio">0.25</Db><Sg N="Single">1.5</Sg><Nil N="None" />'
        '<Version N="V">10.0</Version>'
        '<G N="Id">6c3ce3d4-5d6b-4c1f-9a55-1c4b2f0d9e10</G>'
        '<DT N="Created">2024-01-02T03:04:05.1234567+01:00</DT><TS N="Up">PT1H</TS>'
        "</Props></Obj>"
    )

    def test_same_values_as_pypsrp(self) -> None:
        import xml.etree.ElementTree as ET

        from pypsrp.serializer import Serializer

        from reconciler.providers.hyperv.wire import DotNetDateTime, TypedSerializer

        plain = Serializer().deserialize(ET.fromstring(self.CLIXML))
        typed = TypedSerializer().deserialize(ET.fromstring(self.CLIXML))
        assert typed.adapted_properties == plain.adapted_properties
        assert typed.types == plain.types
        assert typed.adapted_properties["Name"] == "vm\n01"
        assert isinstance(typed.adapted_properties["Created"], DotNetDateTime)
        assert not isinstance(plain.adapted_properties["Created"], DotNetDateTime)
