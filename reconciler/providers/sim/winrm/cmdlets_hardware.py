"""The peer's cmdlets for a VM's memory model and SCSI controllers, through the world rules.

Set-VMMemory is ``set_vm_memory`` (startup memory and dynamic-memory bounds in one step, so
the rule sees them together); Add-VMScsiController / Remove-VMScsiController are
``set_scsi_controllers`` with one more or one fewer. Get-VMMemory and Get-VMScsiController
answer with Hyper-V's type names and wire types (bytes as Int64, Buffer and ControllerNumber
as Int32).

Simplifications: the world keeps no bounds for a VM with static memory, so the peer's
Get-VMMemory shows Hyper-V's defaults for a new VM there (512 MiB, 1 TiB), and turning dynamic
memory on needs -MinimumBytes and -MaximumBytes (a host would take the kept bounds). A host
removes any controller no disk is on; the peer removes only the highest numbered (the world
renumbers nothing), which is what the provider does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from reconciler.model.records import VirtualMachine
from reconciler.model.rules_memory import dynamic_to_params
from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm.binding import Param, PeerError, Spec
from reconciler.providers.sim.winrm.cmdlets_lifecycle import _vm_here
from reconciler.providers.sim.winrm.cmdlets_read import HV

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

MEMORY_TYPES = ("Microsoft.HyperV.PowerShell.VMMemory",)
SCSI_TYPES = ("Microsoft.HyperV.PowerShell.VMScsiController",)
STATIC_BOUNDS_MIB = (512, 1024 * 1024)  # what Hyper-V gives a new VM, shown for static memory
BUFFER_PCT = (5, 2000)  # Set-VMMemory -Buffer's range
DEFAULT_BUFFER_PCT = 20


def _named(host: Host, spec: Spec, names: list[str] | None) -> list[VirtualMachine]:
    wanted = [n.lower() for n in names or ["*"]]
    found = [vm for vm in host.local_vms() if "*" in wanted or vm.name.lower() in wanted]
    for name in names or []:
        if "*" not in name and not any(vm.name.lower() == name.lower() for vm in found):
            _vm_here(host, spec, name)  # raises the host's "unable to find" error
    return found


def _mib(spec: Spec, name: str, value: int) -> int:
    if value <= 0 or value % o.MIB:
        raise PeerError(
            f"Cannot validate argument on parameter '{name}': memory must be a positive "
            "multiple of 2 MB.",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
            name,
        )
    return value // o.MIB


# --- memory --------------------------------------------------------------------------------


def memory_object(vm: VirtualMachine) -> Any:
    dynamic = vm.memory_model()
    low, high = (
        (dynamic.minimum_mib, dynamic.maximum_mib) if dynamic is not None else STATIC_BOUNDS_MIB
    )
    return o.ps_object(
        MEMORY_TYPES,
        {
            "VMName": vm.name,
            "DynamicMemoryEnabled": dynamic is not None,
            "Startup": o.i64(vm.memory_mib * o.MIB),
            "Minimum": o.i64(low * o.MIB),
            "Maximum": o.i64(high * o.MIB),
            "Buffer": dynamic.buffer_pct if dynamic is not None else DEFAULT_BUFFER_PCT,
            "Priority": 50,
        },
        "Microsoft.HyperV.PowerShell.VMMemory",
    )


def get_memory(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    yield from (memory_object(vm) for vm in _named(host, spec, p.get("VMName")))


def set_memory(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    current = vm.memory_model()
    startup = _mib(spec, "StartupBytes", p["StartupBytes"]) if "StartupBytes" in p else None
    enabled = bool(p.get("DynamicMemoryEnabled", current is not None))
    bounds = [k for k in ("MinimumBytes", "MaximumBytes", "Buffer") if k in p]
    dynamic: dict[str, int] | None = None
    if enabled:
        dynamic = dict(dynamic_to_params(current) or {})
        if "MinimumBytes" in p:
            dynamic["minimum_mib"] = _mib(spec, "MinimumBytes", p["MinimumBytes"])
        if "MaximumBytes" in p:
            dynamic["maximum_mib"] = _mib(spec, "MaximumBytes", p["MaximumBytes"])
        if "Buffer" in p:
            if not BUFFER_PCT[0] <= p["Buffer"] <= BUFFER_PCT[1]:
                raise PeerError(
                    f"Cannot validate argument on parameter 'Buffer'. The {p['Buffer']} "
                    f"argument is outside {BUFFER_PCT[0]}-{BUFFER_PCT[1]}.",
                    "InvalidData",
                    spec.fqid("ParameterArgumentValidationError"),
                    "Buffer",
                )
            dynamic["buffer_pct"] = p["Buffer"]
        if "minimum_mib" not in dynamic or "maximum_mib" not in dynamic:
            raise PeerError(
                "This peer keeps no bounds for a VM with static memory: turn dynamic memory "
                "on with -MinimumBytes and -MaximumBytes.",
                "InvalidArgument",
                spec.fqid("InvalidParameter"),
                vm.name,
            )
        dynamic.setdefault("buffer_pct", DEFAULT_BUFFER_PCT)
    elif bounds:
        raise PeerError(
            f"This peer's world keeps {', '.join(bounds)} only with dynamic memory on.",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
            vm.name,
        )
    host.apply(
        spec,
        "set_vm_memory",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "memory_mib": vm.memory_mib if startup is None else startup,
         "dynamic": dynamic},
        vm.name,
    )  # fmt: skip
    return iter(())


# --- SCSI controllers ----------------------------------------------------------------------


def scsi_object(vm: VirtualMachine, number: int) -> Any:
    # Drives is past the serialization depth: each drive as its ToString() text.
    drives = [
        f"HardDiskDrive (Name = 'Hard Drive on SCSI controller number {number} at location "
        f"{d.slot}') [VMName = '{vm.name}']"
        for d in vm.disks
        if d.controller == "scsi" and d.controller_number == number
    ]
    return o.ps_object(
        SCSI_TYPES,
        {
            "Name": "SCSI Controller",
            "VMName": vm.name,
            "ControllerNumber": number,
            "Drives": o.ps_list(drives),
        },
        f"VMScsiController (Name = 'SCSI Controller') [VMName = '{vm.name}']",
    )


def get_scsi(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    for vm in _named(host, spec, p.get("VMName")):
        numbers = range(vm.scsi_count())
        if "ControllerNumber" in p:
            numbers = range(p["ControllerNumber"], p["ControllerNumber"] + 1)
            if p["ControllerNumber"] not in range(vm.scsi_count()):
                host.error(_no_controller(spec, vm, p["ControllerNumber"]))
                continue
        yield from (scsi_object(vm, n) for n in numbers)


def _no_controller(spec: Spec, vm: VirtualMachine, number: int) -> PeerError:
    return PeerError(
        f"{spec.name} : No SCSI controller number {number} was found on {vm.name}.",
        "ObjectNotFound",
        spec.fqid("ObjectNotFound"),
        str(number),
    )


def _set_count(host: Host, spec: Spec, vm: VirtualMachine, count: int) -> None:
    host.apply(
        spec,
        "set_scsi_controllers",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "count": count},
        vm.name,
    )


def add_scsi(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    _set_count(host, spec, vm, vm.scsi_count() + 1)
    return iter(())


def remove_scsi(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    number, count = p["ControllerNumber"], vm.scsi_count()
    if number not in range(count):
        raise _no_controller(spec, vm, number)
    if number != count - 1:
        raise PeerError(
            f"This peer removes the highest-numbered SCSI controller only ({count - 1} of "
            f"{vm.name}), so the others keep their numbers.",
            "InvalidOperation",
            spec.fqid("InvalidOperation"),
            str(number),
        )
    _set_count(host, spec, vm, count - 1)
    return iter(())


S = Param("str", True)
SS = Param("strs")
I64 = Param("i64")

HARDWARE_SPECS: dict[str, tuple[Spec, Any]] = {
    "Set-VMMemory": (
        Spec(
            "Set-VMMemory",
            f"{HV}.SetVMMemory",
            {
                "VMName": S,
                "DynamicMemoryEnabled": Param("bool"),
                "StartupBytes": I64,
                "MinimumBytes": I64,
                "MaximumBytes": I64,
                "Buffer": Param("i32"),
            },
            ("VMName",),
        ),
        set_memory,
    ),
    "Get-VMMemory": (
        Spec("Get-VMMemory", f"{HV}.GetVMMemory", {"VMName": SS}, ("VMName",)),
        get_memory,
    ),
    "Get-VMScsiController": (
        Spec(
            "Get-VMScsiController",
            f"{HV}.GetVMScsiController",
            {"VMName": SS, "ControllerNumber": Param("i32")},
            ("VMName", "ControllerNumber"),
        ),
        get_scsi,
    ),
    "Add-VMScsiController": (
        Spec("Add-VMScsiController", f"{HV}.AddVMScsiController", {"VMName": S}, ("VMName",)),
        add_scsi,
    ),
    "Remove-VMScsiController": (
        Spec(
            "Remove-VMScsiController",
            f"{HV}.RemoveVMScsiController",
            {"VMName": S, "ControllerNumber": Param("i32", True)},
            ("VMName", "ControllerNumber"),
        ),
        remove_scsi,
    ),
}
