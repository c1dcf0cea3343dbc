"""The WinRM/PSRP peer's transport: a real pypsrp client opens a runspace pool on it over loopback
HTTP and runs pipelines against a tiny test handler."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from psrpcore.types import PSNoteProperty, PSObject, PSUInt64
from pypsrp.complex_objects import PSInvocationState
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue
from pypsrp.wsman import WSMan

from reconciler.providers.sim.winrm.soap import FAULT_ENVELOPE_TOO_LARGE
from reconciler.providers.sim.winrm.transport import (
    Invocation,
    PipelineWriter,
    TerminatingError,
    WinRMServer,
)

USER, PASSWORD = "peer-admin", "s3cret-Pa55"
INJECTION = "'; Remove-VM -Force *; '"


class Recorder:
    """The test handler: a few made-up cmdlets, and every invocation it saw."""

    def __init__(self) -> None:
        self.invocations: list[Invocation] = []
        self.saw_stop = threading.Event()

    def __call__(self, invocation: Invocation, writer: PipelineWriter) -> None:
        self.invocations.append(invocation)
        name = invocation.commands[0].name
        if name == "Get-Thing":
            for thing in ("alpha", "beta"):
                obj = PSObject()
                obj.PSObject.type_names = ["Deserialized.Test.Thing", "Deserialized.System.Object"]
                obj.PSObject.extended_properties.append(PSNoteProperty("Name", thing))
                obj.PSObject.extended_properties.append(PSNoteProperty("Bytes", PSUInt64(2**33)))
                writer.write_output(obj)
        elif name == "Get-Missing":
            writer.write_error(
                "No thing named 'nope'.",
                category="ObjectNotFound",
                fq_error_id="ThingNotFound,Test.GetThing",
                target="nope",
            )
        elif name == "Remove-Thing":
            raise TerminatingError(
                "Thing 'alpha' is in use.", "ResourceBusy", "ThingInUse,Test.RemoveThing", "alpha"
            )
        elif name == "Break-Thing":
            raise RuntimeError("handler bug")
        elif name == "Wait-Thing":
            if writer.wait_stopped(10):
                self.saw_stop.set()
        elif name == "Get-Blob":
            for _ in range(int(dict(invocation.commands[0].parameters)["Count"])):
                writer.write_output("x" * 50_000)
        elif name == "Echo":
            writer.write_output(len(str(invocation.commands[0].parameters[0][1])))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def serve(recorder: Recorder, **kwargs: Any) -> WinRMServer:
    server = WinRMServer(recorder, ["hv01", "hv02"], username=USER, password=PASSWORD, **kwargs)
    server.start()
    return server


@pytest.fixture
def server(recorder: Recorder) -> Iterator[WinRMServer]:
    peer = serve(recorder)
    yield peer
    peer.close()


def client(server: WinRMServer, node: str = "hv01", password: str = PASSWORD) -> WSMan:
    return WSMan(
        "127.0.0.1",
        port=server.port,
        path=f"{node}/wsman",
        ssl=False,
        auth="basic",
        encryption="never",
        username=USER,
        password=password,
        operation_timeout=5,
    )


def run(pool: RunspacePool, cmdlet: str, **params: Any) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_cmdlet(cmdlet)
    for name, value in params.items():
        ps.add_parameter(name, value)
    ps.invoke()
    return ps


class TestPool:
    """A pypsrp RunspacePool opens over HTTP and says which PowerShell it talks to."""

    def test_opens_with_protocol_2_3_and_runs_a_cmdlet(
        self, server: WinRMServer, recorder: Recorder
    ) -> None:
        with RunspacePool(client(server)) as pool:
            assert pool.protocol_version == "2.3"
            table = pool.application_private_data.data["PSVersionTable"]
            assert table["PSVersion"] == "5.1.17763.1"
            ps = run(pool, "Get-Thing", Name="alpha")
        assert [o.extended_properties["Name"] for o in ps.output] == ["alpha", "beta"]
        assert ps.output[0].types == ["Deserialized.Test.Thing", "Deserialized.System.Object"]
        assert ps.output[0].extended_properties["Bytes"] == 8589934592
        assert recorder.invocations[0].node == "hv01"
        assert recorder.invocations[0].username == USER
        assert recorder.invocations[0].commands[0].parameters == [("Name", "alpha")]

    def test_protocol_2_1_advertises_powershell_2(self, recorder: Recorder) -> None:
        peer = serve(recorder, protocol_version="2.1")
        try:
            wsman = client(peer)
            with RunspacePool(wsman) as pool:
                assert pool.protocol_version == "2.1"
                assert pool.ps_version == "2.0"
                table = pool.application_private_data.data["PSVersionTable"]
                assert table["PSVersion"] == "2.0"
                assert table["BuildVersion"] == "6.1.7601.17514"
                # pypsrp keeps WinRM 2.0's 150 KiB envelopes for protocol < 2.2
                assert wsman.max_envelope_size == 153600
                assert [o.extended_properties["Name"] for o in run(pool, "Get-Thing").output] == [
                    "alpha",
                    "beta",
                ]
        finally:
            peer.close()

    def test_each_node_has_its_own_path(self, server: WinRMServer, recorder: Recorder) -> None:
        assert server.url("hv02") == f"http://127.0.0.1:{server.port}/hv02/wsman"
        with RunspacePool(client(server, "hv02")) as pool:
            run(pool, "Get-Thing")
        assert recorder.invocations[0].node == "hv02"

    def test_unknown_node_is_404(self, server: WinRMServer) -> None:
        with pytest.raises(WinRMTransportError) as err:
            RunspacePool(client(server, "hv99")).open()
        assert err.value.code == 404

    def test_shell_dropped_by_the_server_is_not_alive(self, server: WinRMServer) -> None:
        pool = RunspacePool(client(server))
        pool.open()
        assert pool.is_alive()
        assert server.drop_shells("hv01") == 1
        assert not pool.is_alive()


class TestAuthAndBinding:
    """Basic auth with our one account, on loopback addresses only."""

    def test_wrong_password_is_an_authentication_error(self, server: WinRMServer) -> None:
        with pytest.raises(AuthenticationError, match="Failed to authenticate the user peer-admin"):
            RunspacePool(client(server, password="wrong")).open()

    @pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "192.168.1.10", "::", "example.com"])
    def test_refuses_non_loopback_hosts(self, recorder: Recorder, host: str) -> None:
        with pytest.raises(ValueError, match="loopback"):
            WinRMServer(recorder, ["hv01"], username=USER, password=PASSWORD, host=host)

    def test_other_loopback_address(self, recorder: Recorder) -> None:
        peer = WinRMServer(recorder, ["hv01"], username=USER, password=PASSWORD, host="127.0.0.2")
        peer.close()


class TestErrors:
    """Error records reach pypsrp's error stream; terminating ones fail the pipeline."""

    def test_non_terminating_error_is_in_the_stream_only(self, server: WinRMServer) -> None:
        with RunspacePool(client(server)) as pool:
            ps = run(pool, "Get-Missing")
        assert ps.had_errors is False  # why the client must check the stream, not the flag
        assert ps.state == PSInvocationState.COMPLETED
        [error] = ps.streams.error
        assert str(error) == "No thing named 'nope'."
        assert error.fq_error == "ThingNotFound,Test.GetThing"
        assert error.category == 13  # ObjectNotFound
        assert error.target_name == "nope"

    def test_terminating_error_fails_the_pipeline(self, server: WinRMServer) -> None:
        with RunspacePool(client(server)) as pool:
            ps = run(pool, "Remove-Thing")
        assert ps.had_errors is True
        assert ps.state == PSInvocationState.FAILED
        [error] = ps.streams.error
        assert str(error) == "Thing 'alpha' is in use."
        assert error.fq_error == "ThingInUse,Test.RemoveThing"
        assert error.category == 19  # ResourceBusy

    def test_handler_crash_is_one_error_record(self, server: WinRMServer) -> None:
        with RunspacePool(client(server)) as pool:
            ps = run(pool, "Break-Thing")
            assert [str(e) for e in ps.streams.error] == ["RuntimeError: handler bug"]
            assert ps.streams.error[0].fq_error == "PeerHandlerFailed"
            assert ps.streams.error[0].category == 0  # NotSpecified
            assert ps.state == PSInvocationState.COMPLETED
            assert run(pool, "Get-Thing").output  # the pool survives


class TestTimeoutsAndStop:
    """Receive honours OperationTimeout; ctrl_c stops the pipeline's handler."""

    def test_receive_times_out_with_the_fault_pypsrp_retries(
        self, server: WinRMServer, recorder: Recorder
    ) -> None:
        with RunspacePool(client(server)) as pool:
            ps = PowerShell(pool)
            ps.add_cmdlet("Wait-Thing")
            ps.begin_invoke()
            ps.poll_invoke(timeout=1)  # the Running state message
            ps.poll_invoke(timeout=0.2)  # nothing: the timeout fault, swallowed by pypsrp
            assert ps.state == PSInvocationState.RUNNING
            ps.stop()
            assert recorder.saw_stop.wait(5)
            assert ps.state == PSInvocationState.STOPPED
            ps.close()
            assert run(pool, "Get-Thing").output

    def test_timeout_fault_code(self, server: WinRMServer) -> None:
        with RunspacePool(client(server)) as pool, pytest.raises(WSManFaultError) as err:
            pool._receive(timeout=0.2)  # the pool has nothing to say
        assert err.value.code == 2150858793


class TestLargeMessages:
    """Output and input larger than one envelope cross several Receives and Sends."""

    def test_large_output_crosses_several_envelopes(self, recorder: Recorder) -> None:
        peer = serve(recorder, protocol_version="2.1")
        try:
            wsman = client(peer)
            receives = 0
            real_receive = wsman.receive

            def counting_receive(*args: Any, **kwargs: Any) -> Any:
                nonlocal receives
                receives += 1
                return real_receive(*args, **kwargs)

            wsman.receive = counting_receive  # type: ignore[method-assign]
            with RunspacePool(wsman) as pool:
                receives = 0
                ps = run(pool, "Get-Blob", Count=20)  # ~1 MB of CLIXML in 150 KiB envelopes
            assert ps.output == ["x" * 50_000] * 20
            assert receives >= 7
        finally:
            peer.close()

    def test_large_input_arrives_in_several_sends(self, recorder: Recorder) -> None:
        peer = serve(recorder, protocol_version="2.1")
        try:
            wsman = client(peer)
            sends = 0
            real_send = wsman.send

            def counting_send(*args: Any, **kwargs: Any) -> Any:
                nonlocal sends
                sends += 1
                return real_send(*args, **kwargs)

            wsman.send = counting_send  # type: ignore[method-assign]
            with RunspacePool(wsman) as pool:
                ps = PowerShell(pool)
                ps.add_cmdlet("Echo").add_argument("y" * 400_000)
                assert ps.invoke() == [400_000]
            assert sends >= 2
        finally:
            peer.close()

    def test_envelope_over_winrm2_limit_is_refused(self, recorder: Recorder) -> None:
        # Protocol 2.3 makes pypsrp grow its envelopes to 500 KiB; a WinRM 2.0 server refuses them.
        peer = serve(recorder, max_envelope_size=153600)
        try:
            with RunspacePool(client(peer)) as pool:
                ps = PowerShell(pool)
                ps.add_cmdlet("Echo").add_argument("y" * 400_000)
                with pytest.raises(WSManFaultError) as err:
                    ps.invoke()
                assert err.value.code == FAULT_ENVELOPE_TOO_LARGE
        finally:
            peer.close()


class TestValues:
    """Parameter values arrive as typed data, never as PowerShell text."""

    def test_injection_text_is_one_string_value(
        self, server: WinRMServer, recorder: Recorder
    ) -> None:
        with RunspacePool(client(server)) as pool:
            run(pool, "Get-Thing", Name=INJECTION)
        [command] = recorder.invocations[0].commands
        assert command.name == "Get-Thing"
        assert command.parameters == [("Name", INJECTION)]
        assert type(command.parameters[0][1]) is not int
        assert isinstance(command.parameters[0][1], str)

    def test_uint64_and_switch_and_positional(
        self, server: WinRMServer, recorder: Recorder
    ) -> None:
        with RunspacePool(client(server)) as pool:
            ps = PowerShell(pool)
            ps.add_cmdlet("Get-Thing").add_parameter("Bytes", TaggedValue("U64", 2**36))
            ps.add_parameter("Force").add_argument("vm01")
            ps.add_cmdlet("Select-Object").add_parameter("Property", ["Name"])
            ps.invoke()
        first, second = recorder.invocations[0].commands
        bytes_value = first.parameters[0][1]
        assert isinstance(bytes_value, PSUInt64) and bytes_value == 2**36
        assert first.parameters[1:] == [("Force", None), (None, "vm01")]
        assert (second.name, second.parameters) == ("Select-Object", [("Property", ["Name"])])


class TestRobustness:
    """Malformed requests get an HTTP or WSMan error, never a traceback; idle shells expire."""

    def post(
        self, server: WinRMServer, body: bytes, path: str = "/hv01/wsman", **headers: str
    ) -> Any:
        import base64
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        conn.request("POST", path, body, {"Authorization": f"Basic {auth}", **headers})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, data

    def test_not_xml_is_a_fault(self, server: WinRMServer) -> None:
        status, data = self.post(server, b"<<not xml")
        assert status == 500
        assert b'Code="2150858778"' in data and b"request is not XML" in data

    def test_dtd_is_refused(self, server: WinRMServer) -> None:
        bomb = (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">'
            b"]><s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'>&c;</s:Envelope>"
        )
        status, data = self.post(server, bomb)
        assert status == 500 and b"carries a DTD" in data

    def test_unknown_action_is_a_fault(self, server: WinRMServer) -> None:
        envelope = (
            b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope' "
            b"xmlns:a='http://schemas.xmlsoap.org/ws/2004/08/addressing'><s:Header>"
            b"<a:Action>urn:nothing</a:Action><a:MessageID>uuid:1</a:MessageID></s:Header>"
            b"<s:Body/></s:Envelope>"
        )
        status, data = self.post(server, envelope)
        assert status == 500 and b"shell was not found" in data

    def test_keep_alive_survives_a_404_with_a_body(self, server: WinRMServer) -> None:
        import base64
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        auth = {
            "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        }
        conn.request("POST", "/nowhere/wsman", b"x" * 1000, auth)
        first = conn.getresponse()
        first.read()
        conn.request("POST", "/hv01/wsman", b"<<", auth)  # same connection
        second = conn.getresponse()
        second.read()
        conn.close()
        assert (first.status, second.status) == (404, 500)

    def test_idle_shells_expire(self, recorder: Recorder) -> None:
        now = [0.0]
        peer = serve(recorder, idle_timeout_seconds=60, clock=lambda: now[0])
        try:
            pool = RunspacePool(client(peer))
            pool.open()
            assert pool.is_alive()
            now[0] = 61.0
            assert not pool.is_alive()
            assert peer._shells == {}
        finally:
            peer.close()


class TestUnsupported:
    """What the peer does not serve fails at once instead of hanging the client."""

    def test_get_command_metadata_fails_fast(self, server: WinRMServer) -> None:
        with RunspacePool(client(server)) as pool:
            # The pipeline fails with no output; pypsrp 0.9.1 then pops its empty output list.
            with pytest.raises(IndexError):
                pool.get_command_metadata(["Get-VM"])
            assert run(pool, "Get-Thing").output  # the pool still works

    def test_ipv6_loopback(self, recorder: Recorder) -> None:
        try:
            peer = WinRMServer(recorder, ["hv01"], username=USER, password=PASSWORD, host="::1")
        except OSError:
            pytest.skip("no IPv6 loopback in this sandbox")
        try:
            peer.start()
            assert peer.url("hv01") == f"http://[::1]:{peer.port}/hv01/wsman"
            wsman = WSMan("::1", port=peer.port, path="hv01/wsman", ssl=False, auth="basic",
                          encryption="never", username=USER, password=PASSWORD)  # fmt: skip
            with RunspacePool(wsman) as pool:
                assert run(pool, "Get-Thing").output
        finally:
            peer.close()
