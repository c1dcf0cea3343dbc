"""The constant ``param()`` scripts a 2008 R2 host runs for the hyperv provider's WMI v1 path.

The peer has no PowerShell: it recognises a script by the marker comment in its param block
(``# reconciler-wmi1: <Name>``), binds the arguments against the types the block declares
(``[uint64]`` must arrive as UInt64, ``[int]`` as Int32; ``ValidateSet`` and
``ValidatePattern`` are enforced), and does what the script does through the simulator's
rules. WMI methods that a host runs as jobs return 4096 and leave an ``Msvm_ConcreteJob``
behind (JobState 7 Completed, or 10 Exception with the rule's message); the tool scripts
(diskpart, diskraid) return the tool's exit code.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reconciler.model.records import SwitchConfig
from reconciler.model.rules import switch_to_params
from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm import wmi1_networks, wmi1_roles
from reconciler.providers.sim.winrm.binding import Param, PeerError, Spec
from reconciler.providers.sim.winrm.cmdlets_write import WRITE_SPECS
from reconciler.providers.sim.winrm.wmi1 import obj, u16
from reconciler.providers.sim.winrm.world import CSV_PARTITION, disk_numbers

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

MARKER = re.compile(r"#\s*reconciler-wmi1:\s*([A-Za-z-]+)")
DECLARED = re.compile(
    r"\[(?P<type>string\[\]|string|int\[\]|int|uint64|bool|switch)\]\s*\$(?P<name>\w+)", re.I
)
KINDS = {
    "string": "str",
    "string[]": "strs",
    "int": "i32",
    "uint64": "u64",
    "bool": "bool",
    "switch": "switch",
    "int[]": "obj",
}
JOB_STARTED = 4096


def _refused(message: str, error_id: str = "ScriptNotKnown") -> PeerError:
    return PeerError(message, "PermissionDenied", error_id)


def parse(
    text: str, marker: re.Pattern[str] = MARKER, known: Collection[str] | None = None
) -> tuple[str, Spec, dict[str, str]]:
    """(script name, its parameters as a Spec, ValidatePattern per parameter)."""
    if not text.startswith("[CmdletBinding()] param("):
        raise _refused("This host runs the hyperv provider's constant param() scripts only.")
    found = marker.search(text)
    if found is None or found.group(1) not in (HANDLERS if known is None else known):
        raise _refused("This host does not know this script (no reconciler marker).")
    block = text[: text.index("\n)\n") + 2]
    params: dict[str, Param] = {}
    patterns: dict[str, str] = {}
    for line in block.splitlines()[1:]:
        m = DECLARED.search(line)
        if m is None:
            continue
        attrs, kind, name = line[: m.start()], m.group("type").lower(), m.group("name")
        choices = re.search(r"ValidateSet\(([^)]*)\)", attrs)
        pattern = re.search(r"ValidatePattern\('([^']*)'\)", attrs)
        mandatory = "Mandatory = $true" in attrs
        if choices:
            names = tuple(c.strip().strip("'") for c in choices.group(1).split(","))
            params[name] = Param("choice", mandatory, names)
        else:
            params[name] = Param(KINDS[kind], mandatory)
        if pattern:
            patterns[name] = pattern.group(1)
    spec = Spec(found.group(1), "System.Management.Automation.ScriptBlock", params)
    return found.group(1), spec, patterns


def check_patterns(spec: Spec, patterns: dict[str, str], bound: dict[str, Any]) -> None:
    for name, pattern in patterns.items():
        values = bound.get(name)
        for value in values if isinstance(values, list) else [values]:
            if value is not None and re.fullmatch(pattern, str(value)) is None:
                raise PeerError(
                    f"Cannot validate argument on parameter '{name}'. The argument \"{value}\" "
                    f'does not match the "{pattern}" pattern.',
                    "InvalidData",
                    "ParameterArgumentValidationError",
                    name,
                )


def _ints(spec: Spec, name: str, value: Any) -> list[int]:
    values = value if isinstance(value, list | tuple) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise PeerError(
            f"Cannot process argument transformation on parameter '{name}': {spec.name} takes "
            "System.Int32[] here.",
            "InvalidData",
            "ParameterArgumentTransformationError",
            name,
        )
    return [int(v) for v in values]


def _result(method: str, code: int, job: str = "", output: str = "") -> Any:
    props: dict[str, Any] = {"Method": method, "ReturnValue": code, "Job": job}
    if output:
        props["Output"] = output
    return o.ps_object(("System.Management.Automation.PSCustomObject",), props)


def job(host: Host, method: str, error: PeerError | None) -> Any:
    """A finished Msvm_ConcreteJob for a method the simulator has applied (or refused)."""
    jobs = host.peer.wmi_jobs.setdefault(host.node, {})
    job_id = host.peer.guid("job", f"{host.node}:{len(host.peer.received)}:{method}")
    jobs[job_id] = obj(
        "Msvm_ConcreteJob",
        {
            "InstanceID": job_id,
            "Caption": method,
            "JobState": u16(10 if error else 7),
            "PercentComplete": u16(100),
            "ErrorCode": u16(32768 if error else 0),
            "ErrorDescription": error.message if error else "",
        },
    )
    return _result(method, JOB_STARTED, job_id)


def _write(name: str) -> tuple[Spec, Any]:
    return WRITE_SPECS[name]


def _as_job(host: Host, method: str, cmdlet: str, params: dict[str, Any]) -> Iterator[Any]:
    spec, fn = _write(cmdlet)
    try:
        list(fn(host, spec, params, None))
    except PeerError as err:
        yield job(host, method, err)
        return
    yield job(host, method, None)


# --- the scripts -------------------------------------------------------------------------------


def set_switch_vlans(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    trunk = _ints(spec, "TrunkedVlanId", p.get("TrunkedVlanId", []))
    params: dict[str, Any] = {"ManagementOS": True, "VMNetworkAdapterName": p["SwitchName"]}
    if trunk:
        params.update(
            Trunk=True,
            AllowedVlanIdList=",".join(str(v) for v in trunk),
            NativeVlanId=int(p.get("NativeVlanId", 0)),
        )
    else:
        params["Untagged"] = True
    cmd_spec, fn = _write("Set-VMNetworkAdapterVlan")
    list(fn(host, cmd_spec, params, None))
    yield _result("Msvm_VLANEndpointSettingData.Put", 0)


def new_switch(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["SwitchName"]
    kind = p.get("SwitchType", "External").lower()
    uplink: str | None = None
    if kind == "external":
        description = p.get("UplinkAdapter", "")
        uplink = next(
            (n.name for n in host.this_node().nics if f"{n.name} Ethernet Adapter" == description),
            None,
        )
        if uplink is None:
            raise PeerError(
                f"no physical adapter '{description}' to bind", "ObjectNotFound", "RuntimeException"
            )
    if name in host.this_node().status.switches:
        yield _result("CreateSwitch", 32773)  # v1: "already exists"... the caller decides
        return
    management = bool(p.get("ManagementOS", False))
    cfg = SwitchConfig(kind, uplink, management, frozenset(), None)
    try:
        host.apply(
            spec,
            "match_vswitch",
            f"Node/{host.node}",
            {"node": host.node, "switch": name, "config": switch_to_params(cfg)},
            name,
        )
    except PeerError as err:
        yield job(host, "SetupSwitch", err)
        return
    if kind == "private":
        yield _result("CreateSwitch", 0)
        return
    yield job(host, "SetupSwitch", None)


def set_switch_binding(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    """An existing switch bound again through the match_vswitch rule. The VLAN settings the
    rule checks stay as they are here (the provider sets the trunk again right after)."""
    name = p["SwitchName"]
    current = host.this_node().status.switches.get(name)
    if current is None:
        raise PeerError(f"no virtual switch named {name}", "ObjectNotFound", "RuntimeException")
    kind = p.get("SwitchType", "External").lower()
    uplink: str | None = None
    if kind == "external":
        description = p.get("UplinkAdapter", "")
        uplink = next(
            (n.name for n in host.this_node().nics if f"{n.name} Ethernet Adapter" == description),
            None,
        )
        if uplink is None:
            raise PeerError(
                f"no physical adapter '{description}' to bind", "ObjectNotFound", "RuntimeException"
            )
    cfg = replace(
        current, type=kind, uplink_nic=uplink, management_os=bool(p.get("ManagementOS", False))
    )
    try:
        host.apply(
            spec,
            "match_vswitch",
            f"Node/{host.node}",
            {"node": host.node, "switch": name, "config": switch_to_params(cfg)},
            name,
        )
    except PeerError as err:
        yield job(host, "TeardownSwitch", err)
        return
    yield job(host, "TeardownSwitch", None)
    if kind != "private":
        yield job(host, "SetupSwitch", None)


def new_vhd(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    kind = p.get("Type", "Dynamic")
    params: dict[str, Any] = {"Path": p["Path"], "SizeBytes": p["SizeBytes"], kind: True}
    if kind == "Differencing":
        params["ParentPath"] = p.get("ParentPath", "")
    yield from _as_job(host, f"Create{kind}VirtualHardDisk", "New-VHD", params)


def add_vhd_drive(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    params = {
        "VMName": p["VMName"],
        "ControllerType": p.get("ControllerType", "SCSI"),
        "ControllerNumber": int(p.get("ControllerNumber", 0)),
        "ControllerLocation": int(p.get("ControllerLocation", 0)),
        "Path": p["Path"],
    }
    yield from _as_job(host, "AddVirtualSystemResources", "Add-VMHardDiskDrive", params)


def extend_partition(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    node = host.this_node()
    by_number = {n: v for v, n in disk_numbers(host.estate, node.cluster).items()}
    volume = by_number.get(int(p["DiskNumber"]))
    if volume is None or p["PartitionNumber"] != CSV_PARTITION or volume not in node.status.luns:
        yield _result("diskpart extend", 2147942402, output="The disk or partition is not found.")
        return
    # diskpart rescans first: it sees the LUN as the array has it now.
    lun = host.estate.volumes[volume].lun_size_gib
    host.peer.seen_lun_gib[(host.node, volume)] = lun
    want = int(p["SizeBytes"])
    if want % o.GIB or want > lun * o.GIB:
        yield _result(
            "diskpart extend",
            -2147212243,
            output="There is not enough usable free space on specified disk(s) to extend the "
            "volume.",
        )
        return
    try:
        host.apply(
            spec,
            "extend_volume",
            f"ClusterSharedVolume/{volume}",
            {"volume": volume, "size_gib": want // o.GIB},
            volume,
        )
    except PeerError as err:
        yield _result("diskpart extend", 1, output=err.message)
        return
    yield _result("diskpart extend", 0, output="DiskPart successfully extended the volume.")


def extend_lun(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    want = int(p["SizeBytes"])
    try:
        host.apply(
            spec,
            "extend_lun",
            f"ClusterSharedVolume/{p['Lun']}",
            {"volume": p["Lun"], "lun_size_gib": want // o.GIB},
            p["Lun"],
        )
    except PeerError as err:
        yield _result("diskraid extend lun", 1, output=err.message)
        return
    yield _result("diskraid extend lun", 0)


def unmask_luns(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    node = p["HostName"]
    try:
        host.apply(
            spec,
            "present_storage",
            f"Node/{node}",
            {"node": node, "volumes": sorted(p["Lun"])},
            node,
        )
    except PeerError as err:
        yield _result("diskraid unmask lun", 1, output=err.message)
        return
    yield _result("diskraid unmask lun", 0)


def live_migration_there_and_back(
    host: Host, spec: Spec, p: dict[str, Any], _in: Any
) -> Iterator[Any]:
    host.apply(
        spec,
        "test_live_migration",
        f"Node/{p['Node']}",
        {"node": p["Node"], "vm": p["VMName"]},
        p["VMName"],
    )
    yield _result("Move-ClusterVirtualMachineRole", 0)


def set_vm_resources(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    params: dict[str, Any] = {"Name": p["VMName"]}
    if p.get("MemoryMB"):
        params["MemoryStartupBytes"] = int(p["MemoryMB"]) * o.MIB
    if p.get("ProcessorCount"):
        params["ProcessorCount"] = int(p["ProcessorCount"])
    yield from _as_job(host, "ModifyVirtualSystemResources", "Set-VM", params)


def remove_vhd_drive(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    params = {
        "VMName": p["VMName"],
        "ControllerType": p.get("ControllerType", "SCSI"),
        "ControllerNumber": int(p.get("ControllerNumber", 0)),
        "ControllerLocation": int(p.get("ControllerLocation", 0)),
    }
    yield from _as_job(host, "RemoveVirtualSystemResources", "Remove-VMHardDiskDrive", params)


def expand_vhd(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    params = {"Path": p["Path"], "SizeBytes": int(p["SizeBytes"])}
    yield from _as_job(host, "ExpandVirtualHardDisk", "Resize-VHD", params)


def get_nic_offloads(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    """The registry keywords a driver writes: *VMQ "1"/"0", *JumboPacket "9014"/"1514"."""
    for nic in host.this_node().nics:
        yield o.ps_object(
            ("System.Management.Automation.PSCustomObject",),
            {
                "Name": nic.name,
                "Vmq": "1" if nic.offloads.vmq else "0",
                "JumboPacket": "9014" if nic.offloads.jumbo_frames else "1514",
            },
        )


HANDLERS: dict[str, Any] = {
    "Set-SwitchVlans": set_switch_vlans,
    "New-Switch": new_switch,
    "Set-SwitchBinding": set_switch_binding,
    "New-Vhd": new_vhd,
    "Add-VhdDrive": add_vhd_drive,
    "Extend-Partition": extend_partition,
    "Extend-Lun": extend_lun,
    "Unmask-Luns": unmask_luns,
    "Test-LiveMigration": live_migration_there_and_back,
    "Set-VmResources": set_vm_resources,
    "Remove-VhdDrive": remove_vhd_drive,
    "Expand-Vhd": expand_vhd,
    **wmi1_roles.SCRIPTS,
}


def script_entry(text: str) -> tuple[Spec, Any]:
    """The Spec and handler of a received script (PermissionDenied for any other text)."""
    name, spec, patterns = parse(text)
    handler = HANDLERS[name]

    def run(host: Host, s: Spec, bound: dict[str, Any], inputs: Any) -> Iterator[Any]:
        check_patterns(s, patterns, bound)
        yield from handler(host, s, bound, inputs)

    return spec, run


# --- FailoverClusters cmdlets of 2008 R2 that the later releases' peer does not need ----------


def validate(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    cluster = host.this_cluster()
    host.apply(spec, "validate_cluster", f"Cluster/{cluster.name}", {"cluster": cluster.name}, None)
    yield o.ps_object(
        ("System.IO.FileInfo",),
        {
            "Name": "Validation Report.mht",
            "FullName": "C:\\Windows\\Cluster\\Reports\\Validation Report.mht",
        },
    )


FC = "Microsoft.FailoverClusters.PowerShell.Commands"
CMDLETS: dict[str, tuple[Spec, Any]] = {
    "Test-Cluster": (
        Spec(
            "Test-Cluster",
            f"{FC}.TestClusterCommand",
            {"Node": Param("strs"), "Include": Param("strs")},
        ),
        validate,
    ),
    **wmi1_roles.CMDLETS,  # pause/resume, Move-/Start-/Stop-ClusterGroup
    **wmi1_networks.CMDLETS,  # network Ids, the VM resource type's migration networks
    # ... and Move-ClusterVirtualMachineRole without -MigrationType (live only).
    "Move-ClusterVirtualMachineRole": (
        Spec(
            "Move-ClusterVirtualMachineRole",
            f"{FC}.MoveClusterVirtualMachineRoleCommand",
            {"Name": Param("str", True), "Node": Param("str", True)},
        ),
        lambda host, spec, p, i: WRITE_SPECS["Move-ClusterVirtualMachineRole"][1](
            host, spec, {**p, "MigrationType": "Live"}, i
        ),
    ),
    "Add-ClusterNode": (
        Spec("Add-ClusterNode", f"{FC}.AddClusterNodeCommand", {"Name": Param("str", True)}),
        # 2008 R2 has no -NoStorage; storage already in the cluster is not taken again.
        lambda host, spec, p, i: WRITE_SPECS["Add-ClusterNode"][1](
            host, spec, {**p, "NoStorage": True}, i
        ),
    ),
}


def get_vhd_info(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    from reconciler.providers.sim.winrm.world import find_disk

    kinds = {"fixed": 2, "dynamic": 3, "differencing": 4}
    for path in p["Path"]:
        found = find_disk(host.estate, path)
        if found is None:
            raise PeerError(
                f"GetVirtualHardDiskInfo failed with return value 32779 for {path}",
                "OperationStopped",
                "RuntimeException",
                path,
            )
        _vm, disk = found
        yield o.ps_object(
            ("System.Management.Automation.PSCustomObject",),
            {
                "Path": path,
                "Type": kinds[disk.type],
                "MaxInternalSize": o.u64(disk.size_gib * o.GIB),
                "FileSize": o.u64(round(disk.used_gib() * o.GIB)),
                "ParentPath": disk.parent or "",
            },
        )


HANDLERS["Get-VhdInfo"] = get_vhd_info
HANDLERS["Get-NicOffloads"] = get_nic_offloads
