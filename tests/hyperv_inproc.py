"""An in-process stand-in for a PSRP round trip: provider -> CLIXML -> peer -> CLIXML -> provider.

Arguments and results go through the same serialisers as over the wire (pypsrp's on the
client side, psrpcore's on the peer side), without HTTP: fast tests of mapping and targeting.
The contract suite runs the real WS-Management transport.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from psrpcore.types import PSInt, PSInt16, PSInt64, PSUInt64, serialize_clixml
from pypsrp.serializer import Serializer, TaggedValue

from reconciler.providers.hyperv.errors import CommandError, ConnectionFailed
from reconciler.providers.hyperv.wire import decode
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer


@dataclass
class Cmd:
    name: str
    parameters: list[tuple[str | None, Any]] = field(default_factory=list)
    is_script: bool = False


def to_wire(value: Any) -> Any:
    if isinstance(value, TaggedValue):
        return {"U64": PSUInt64, "I64": PSInt64, "I32": PSInt, "I16": PSInt16}[value.tag](
            value.value
        )
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return PSInt(value)  # what pypsrp does with a bare int
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


def from_peer(value: Any) -> Any:
    xml = serialize_clixml(value, None)
    # pypsrp reads CLIXML without its namespace (as its message parser hands it over).
    root = ET.fromstring(
        xml.replace(' xmlns="http://schemas.microsoft.com/powershell/2004/04"', "")
    )
    return decode(Serializer().deserialize(root[0] if len(root) else root))


class InProcSession:
    def __init__(self, peer: HyperVPeer, node: str, down: set[str]) -> None:
        self.peer, self.node, self.down = peer, node, down
        self.round_trips = 0

    def call(
        self,
        cmdlet: str,
        params: Mapping[str, Any] | None = None,
        *,
        then: Sequence[tuple[str, Mapping[str, Any]]] = (),
        deadline_seconds: float = 120.0,
    ) -> list[Any]:
        if self.node in self.down:
            raise ConnectionFailed(f"cannot reach {self.node}")
        self.round_trips += 1
        commands = []
        for name, p in [(cmdlet, params or {}), *then]:
            args = [(k, to_wire(v)) for k, v in p.items()]
            args.append(("ErrorAction", "Stop"))
            commands.append(Cmd(name, args))
        result = self.peer.run(self.node, commands)
        err = result.terminating or (result.errors[0] if result.errors else None)
        if err is not None:
            raise CommandError(cmdlet, err.message, err.category, err.fq_error_id, err.target)
        return [from_peer(v) for v in result.outputs]

    def script(
        self, text: str, params: Mapping[str, Any], *, deadline_seconds: float = 120.0
    ) -> list[Any]:
        """A constant param() script (the 2008 R2 path), as NodeSession.script sends it."""
        if self.node in self.down:
            raise ConnectionFailed(f"cannot reach {self.node}")
        self.round_trips += 1
        args = [(k, to_wire(v)) for k, v in params.items()]
        args.append(("ErrorAction", "Stop"))
        result = self.peer.run(self.node, [Cmd(text, args, is_script=True)])
        err = result.terminating or (result.errors[0] if result.errors else None)
        if err is not None:
            raise CommandError("script", err.message, err.category, err.fq_error_id, err.target)
        return [from_peer(v) for v in result.outputs]

    def close(self) -> None:
        pass


class InProcSessions:
    def __init__(self, peer: HyperVPeer) -> None:
        self.peer = peer
        self.sessions: dict[str, InProcSession] = {}
        self.down: set[str] = set()

    def get(self, node: str) -> InProcSession:
        return self.sessions.setdefault(node, InProcSession(self.peer, node, self.down))

    def round_trips(self) -> int:
        return sum(s.round_trips for s in self.sessions.values())

    def close(self) -> None:
        pass
