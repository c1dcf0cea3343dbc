"""SOAP envelopes of WS-Management ([MS-WSMV]) as the PSRP peer reads and writes them.

Only what a PSRP client sends: the header fields, the shell/command/stream bodies and the faults.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "wsmanfault": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "wst": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "pwsh": "http://schemas.microsoft.com/powershell",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)

TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
ACTION_CREATE = TRANSFER + "Create"
ACTION_DELETE = TRANSFER + "Delete"
ACTION_GET = TRANSFER + "Get"
ACTION_COMMAND = SHELL + "Command"
ACTION_SEND = SHELL + "Send"
ACTION_RECEIVE = SHELL + "Receive"
ACTION_SIGNAL = SHELL + "Signal"
RESPONSE_ACTION = {
    ACTION_CREATE: TRANSFER + "CreateResponse",
    ACTION_DELETE: TRANSFER + "DeleteResponse",
    ACTION_GET: TRANSFER + "GetResponse",
    ACTION_COMMAND: SHELL + "CommandResponse",
    ACTION_SEND: SHELL + "SendResponse",
    ACTION_RECEIVE: SHELL + "ReceiveResponse",
    ACTION_SIGNAL: SHELL + "SignalResponse",
}
POWERSHELL_URI = "http://schemas.microsoft.com/powershell/"
CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
# [MS-PSRP] spells the stop signal "crtl_c"; pypsrp sends "ctrl_c". Both stop the pipeline.
SIGNALS_STOP = ("powershell/signal/ctrl_c", "powershell/signal/crtl_c")
SIGNAL_TERMINATE = SHELL_URI + "/signal/terminate"  # compared case-insensitively
STATE_DONE = SHELL_URI + "/CommandState/Done"
STATE_RUNNING = SHELL_URI + "/CommandState/Running"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

# WSMan fault codes (HRESULTs as unsigned ints, as Windows sends them).
FAULT_OPERATION_TIMEOUT = 2150858793  # 0x80338029: a Receive with nothing to say; clients retry
FAULT_SHELL_NOT_FOUND = 2150858843  # 0x8033805B: unknown ShellId
# The next two values are our choice, not checked against a Windows host; clients read the
# subcode (w:InvalidParameter, w:EncodingLimit per DSP0226) and the message.
FAULT_INVALID = 2150858778  # 0x8033801A: a malformed or unsupported request
FAULT_ENVELOPE_TOO_LARGE = 2150858817  # 0x80338041: request over MaxEnvelopeSize

_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$")


class SoapError(Exception):
    """A request the peer answers with a WSMan fault."""

    def __init__(self, code: int, message: str, *, subcode: str = "w:InvalidParameter") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.subcode = subcode


@dataclass(frozen=True)
class Request:
    action: str
    message_id: str
    resource_uri: str
    shell_id: str | None
    operation_timeout: float
    max_envelope_size: int | None
    options: dict[str, str]
    body: ET.Element


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None or not any(match.groups()):
        raise SoapError(FAULT_INVALID, f"invalid OperationTimeout {text!r}")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def _text(parent: ET.Element, path: str) -> str | None:
    element = parent.find(path, NS)
    return None if element is None or element.text is None else element.text.strip()


def parse_request(raw: bytes) -> Request:
    if re.search(rb"<!doctype", raw, re.IGNORECASE):
        # WS-Management never carries a DTD; refusing it rules out entity expansion tricks.
        raise SoapError(FAULT_INVALID, "request carries a DTD, which WS-Management never does")
    try:
        envelope = ET.fromstring(raw)
    except ET.ParseError as err:
        raise SoapError(FAULT_INVALID, f"request is not XML: {err}") from None
    header = envelope.find("s:Header", NS)
    body = envelope.find("s:Body", NS)
    if header is None or body is None:
        raise SoapError(FAULT_INVALID, "request is not a SOAP envelope")
    action = _text(header, "wsa:Action")
    message_id = _text(header, "wsa:MessageID")
    if not action or not message_id:
        raise SoapError(FAULT_INVALID, "request lacks wsa:Action or wsa:MessageID")
    shell_id = None
    for selector in header.findall("wsman:SelectorSet/wsman:Selector", NS):
        if selector.get("Name") == "ShellId":
            shell_id = (selector.text or "").strip().upper()
    options = {
        option.get("Name", ""): (option.text or "").strip()
        for option in header.findall("wsman:OptionSet/wsman:Option", NS)
    }
    timeout_text = _text(header, "wsman:OperationTimeout")
    envelope_text = _text(header, "wsman:MaxEnvelopeSize")
    return Request(
        action=action,
        message_id=message_id,
        resource_uri=_text(header, "wsman:ResourceURI") or "",
        shell_id=shell_id,
        operation_timeout=parse_duration(timeout_text) if timeout_text else 60.0,
        max_envelope_size=int(envelope_text) if envelope_text and envelope_text.isdigit() else None,
        options=options,
        body=body,
    )


def _envelope(action: str, relates_to: str) -> tuple[ET.Element, ET.Element]:
    envelope = ET.Element(f"{{{NS['s']}}}Envelope")
    header = ET.SubElement(envelope, f"{{{NS['s']}}}Header")
    ET.SubElement(header, f"{{{NS['wsa']}}}Action").text = action
    ET.SubElement(header, f"{{{NS['wsa']}}}MessageID").text = f"uuid:{str(uuid.uuid4()).upper()}"
    ET.SubElement(header, f"{{{NS['wsa']}}}RelatesTo").text = relates_to
    ET.SubElement(header, f"{{{NS['wsa']}}}To").text = ANONYMOUS
    body = ET.SubElement(envelope, f"{{{NS['s']}}}Body")
    return envelope, body


def response(request: Request) -> tuple[ET.Element, ET.Element]:
    """A response envelope for ``request`` and its (empty) body to fill."""
    return _envelope(RESPONSE_ACTION[request.action], request.message_id)


def fault(relates_to: str, error: SoapError, machine: str) -> bytes:
    envelope, body = _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to)
    fault_el = ET.SubElement(body, f"{{{NS['s']}}}Fault")
    code = ET.SubElement(fault_el, f"{{{NS['s']}}}Code")
    ET.SubElement(code, f"{{{NS['s']}}}Value").text = "s:Receiver"
    subcode = ET.SubElement(code, f"{{{NS['s']}}}Subcode")
    ET.SubElement(subcode, f"{{{NS['s']}}}Value").text = error.subcode
    reason = ET.SubElement(fault_el, f"{{{NS['s']}}}Reason")
    ET.SubElement(reason, f"{{{NS['s']}}}Text", {"xml:lang": "en-US"}).text = error.message
    detail = ET.SubElement(fault_el, f"{{{NS['s']}}}Detail")
    wsman_fault = ET.SubElement(
        detail,
        f"{{{NS['wsmanfault']}}}WSManFault",
        {"Code": str(error.code), "Machine": machine},
    )
    ET.SubElement(wsman_fault, f"{{{NS['wsmanfault']}}}Message").text = error.message
    return serialize(envelope)


def serialize(envelope: ET.Element) -> bytes:
    return bytes(ET.tostring(envelope, encoding="utf-8", xml_declaration=False))


def sub(
    parent: ET.Element, prefix: str, name: str, text: str | None = None, **attrib: str
) -> ET.Element:
    element = ET.SubElement(parent, f"{{{NS[prefix]}}}{name}", attrib)
    if text is not None:
        element.text = text
    return element
