"""Running a 2008 R2 write script and checking the WMI method it ends with.

Return value 4096 means a job was started: it is polled through ``Msvm_ConcreteJob`` to
completion within a deadline. Any other non-zero value is an error that quotes the method and
the code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.model.platforms import platform
from reconciler.model.records import Estate
from reconciler.providers.hyperv import act as later
from reconciler.providers.hyperv.errors import CommandError
from reconciler.providers.hyperv.wmi1.observe import wmi

JOB_STARTED = 4096
JOB_DONE, JOB_FAILED = 7, {8, 9, 10}
JOB_SECONDS = 3600.0
PLATFORM = platform("2008r2")  # the planner's table: what this path may do


class Runner(later.Runner):
    def __init__(
        self,
        call: Callable[..., list[Any]],
        estate: Estate,
        poll: Callable[[Callable[[], bool], float, str], None],
        script: Callable[..., list[Any]],
    ) -> None:
        super().__init__(call, estate, poll)
        self.script = script


def failed(method: str, code: int, message: str = "") -> CommandError:
    text = f"{method} returned {code}" + (f": {message}" if message else "")
    return CommandError(method, text, "InvalidOperation", f"WmiMethodFailed,{method}", None)


def run(
    r: Runner, node: str, text: str, params: Mapping[str, Any], seconds: float = JOB_SECONDS
) -> None:
    """Run a write script and wait for the job its WMI method started, if any."""
    for result in r.script(node, text, params, seconds):
        method, code = str(result.get("Method")), int(result.get("ReturnValue") or 0)
        if code == JOB_STARTED:
            wait_job(r, node, method, str(result.get("Job")), seconds)
        elif code != 0:
            raise failed(method, code, str(result.get("Output") or ""))


def wait_job(r: Runner, node: str, method: str, job_id: str, seconds: float) -> None:
    state: dict[str, Any] = {}

    def done() -> bool:
        jobs = {str(j.get("InstanceID")): j for j in wmi(r.call, node, "Msvm_ConcreteJob")}
        job = jobs.get(job_id)
        if job is None:
            raise failed(method, JOB_STARTED, f"job {job_id} is gone from Msvm_ConcreteJob")
        state.update(job)
        return int(job.get("JobState") or 0) in {JOB_DONE, *JOB_FAILED}

    r.poll(done, seconds, f"{method} (job {job_id})")
    if int(state.get("JobState") or 0) != JOB_DONE:
        raise failed(
            method,
            int(state.get("ErrorCode") or 0),
            str(state.get("ErrorDescription") or f"job state {state.get('JobState')}"),
        )
