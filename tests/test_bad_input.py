"""Bad input never crashes, never hangs, and every error points at its line.

Rules that need more than one case file (tests/broken/ holds the single-file cases), the
limits, output safety on the terminal, bad command-line input, and a property over mutated
manifest sets (tests/manifest_mutations.py; bench/fuzz.py runs the same mutations for long).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from manifest_mutations import SPECIAL, VALUES, base_set, mutate_document

from reconciler.cli.main import cli
from reconciler.cli.render import plan_lines
from reconciler.cli.safe_text import cell, markup_safe, visible
from reconciler.engine.plan import Plan
from reconciler.manifest import yamlread
from reconciler.manifest.load import LoadResult, load_paths, load_text

BASE = Path(__file__).resolve().parent / "broken" / "_base"

VM = """apiVersion: reconciler/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  cluster: base
  memory_mib: 1024
  vcpus: 1
  nics:
    - {{name: nic1, switch: {switch}}}
"""


def write_set(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def lines_of(result: LoadResult) -> list[str]:
    return [str(e) for e in result.errors]


def invoke(*args: str, state: Path | None = None) -> Result:
    prefix = ["--state-dir", str(state)] if state is not None else []
    return CliRunner().invoke(cli, [*prefix, *args])


class TestOneErrorPerRootCause:
    """A file that does not read is reported once; what refers into it is not a cascade."""

    def test_syntax_error_leaves_its_objects_unchecked_not_unknown(self, tmp_path: Path) -> None:
        files = base_set()
        # The switch file is broken; the VMs in vms.yaml still name its switch.
        files["switches.yaml"] = files["switches.yaml"].replace(b"type: external", b"type: [")
        result = load_paths([str(write_set(tmp_path / "set", files))])
        assert [(Path(e.file).name, e.line, e.col, e.message) for e in result.errors] == [
            (
                "switches.yaml",
                9,
                13,
                "YAML syntax error: did not find expected ',' or ']' while parsing a flow "
                "sequence that starts at line 7; the objects in this file were not checked",
            )
        ]

    def test_schema_error_in_a_cluster_is_not_repeated_by_its_members(self, tmp_path: Path) -> None:
        files = base_set()
        files["cluster.yaml"] = files["cluster.yaml"].replace(b'platform: "2012r2"', b"platform: 7")
        result = load_paths([str(write_set(tmp_path / "set", files))])
        assert [(Path(e.file).name, e.field) for e in result.problems()] == [
            ("cluster.yaml", "spec.platform")
        ]

    def test_one_misspelt_switch_used_by_many_vms_is_one_error(self, tmp_path: Path) -> None:
        vms = "---\n".join(VM.format(name=f"WEB{i:02}", switch="vSwitch-Vm") for i in range(19))
        files = {**base_set(), "web.yaml": vms.encode()}
        result = load_paths([str(write_set(tmp_path / "set", files))])
        assert [(e.line, e.field, e.message) for e in result.problems()] == [
            (
                10,
                "spec.nics[0].switch",
                "unknown switch 'vSwitch-Vm' in cluster 'base' (used 19 times; this is the "
                "first); did you mean 'vSwitch-VM'?",
            )
        ]


class TestEmptyInput:
    """An empty file is a warning; no manifests at all is an error."""

    def test_an_empty_file_beside_manifests_is_a_warning(self, tmp_path: Path) -> None:
        folder = write_set(tmp_path / "set", {**base_set(), "empty.yaml": b"# nothing yet\n"})
        result = invoke("validate", str(folder))
        assert result.exit_code == 0
        assert f"{folder}/empty.yaml:1:1: -: -: warning: the file is empty" in result.stdout

    def test_only_empty_files_is_an_error(self, tmp_path: Path) -> None:
        folder = write_set(tmp_path / "set", {"a.yaml": b"", "b.yaml": b"---\n...\n"})
        result = invoke("validate", str(folder))
        assert result.exit_code == 1
        assert result.stdout.splitlines()[0] == (
            f"{folder}/a.yaml:1:1: -: -: no manifests found: 2 file(s), all empty "
            "(apiVersion, kind, metadata, spec in each document)"
        )

    def test_a_folder_without_yaml_is_an_error(self, tmp_path: Path) -> None:
        (tmp_path / "notes.txt").write_text("not a manifest")
        result = invoke("validate", str(tmp_path))
        assert result.exit_code == 1
        assert "no manifests found" in result.stdout


class TestLimits:
    """Each limit is an error at the value that crossed it, in bounded time."""

    def test_a_value_longer_than_the_limit(self) -> None:
        text = "a: x\nb: '" + "y" * (yamlread.MAX_SCALAR_CHARS + 1) + "'\n"
        assert lines_of(load_text(text, "long.yaml")) == [
            "long.yaml:2:4: -: -: a value of 65537 characters is longer than a manifest value "
            "may be; the objects in this file were not checked (at most 65536 characters)"
        ]

    def test_too_many_aliases(self) -> None:
        text = "a: &a x\nb: [" + ", ".join(["*a"] * 1001) + "]\n"
        [line] = lines_of(load_text(text, "many.yaml"))
        # The 1001st alias: "b: [" is 4 characters, each "*a, " another 4.
        assert line.startswith(f"many.yaml:2:{5 + 1000 * 4}: -: -: more than 1000 aliases")

    def test_a_document_with_too_many_values(self) -> None:
        text = "a: [" + ", ".join(["1"] * 100_000) + "]\n"
        [line] = lines_of(load_text(text, "big.yaml"))
        # The root mapping, the list and 99,998 items are 100,000 values: the next one crosses.
        assert line.startswith(f"big.yaml:1:{5 + 99_998 * 3}: -: -: the document has more than")

    def test_a_file_larger_than_the_limit(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(yamlread, "MAX_FILE_BYTES", 100)
        path = tmp_path / "big.yaml"
        path.write_bytes(b"# " + b"x" * 200 + b"\n")
        assert lines_of(load_paths([str(path)])) == [
            f"{path}:1:1: -: -: the file is 203 bytes, more than a manifest file may be "
            "(at most 0 MiB: split it into several files)"
        ]

    def test_merge_keys_and_small_aliases_still_work(self, tmp_path: Path) -> None:
        shared = (
            "apiVersion: reconciler/v1\nkind: Node\n"
            "metadata: {name: a1, labels: &common {model: m, cpu: c, firmware: f}}\n"
            "spec:\n  cluster: base\n"
            "  hardware: {<<: *common, firmware: g, memory_mib: 131072, driver_set: d,"
            " patch_level: p}\n"
        )
        (tmp_path / "merge.yaml").write_text(shared)
        merged = load_paths([str(BASE), str(tmp_path / "merge.yaml")])
        assert merged.estate is not None, lines_of(merged)
        hardware = merged.estate.nodes["a1"].hardware
        # Merged keys fill in; a key written in the mapping wins over the merged one.
        assert (hardware.model, hardware.cpu, hardware.firmware) == ("m", "c", "g")
        assert hardware.memory_mib == 131072


class TestTerminalSafety:
    """Values reach the terminal with their markup escaped and control characters visible."""

    @pytest.mark.parametrize(
        ("raw", "shown"),
        [
            ("plain", "plain"),
            ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
            ("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d"),
            ("bell\x07", "bell\\x07"),
            ("\x9b2J", "\\x9b2J"),
            ("line\u2028sep", "line\\u2028sep"),
            ("café", "café"),
        ],
    )
    def test_visible(self, raw: str, shown: str) -> None:
        assert visible(raw) == shown

    def test_markup_is_escaped(self) -> None:
        assert markup_safe("[/x] [bold]b") == "\\[/x] \\[bold]b"
        assert cell("[/x]").plain == "[/x]"

    def test_show_run_with_markup_and_escape_sequences(self, tmp_path: Path) -> None:
        for run_id in ("[/x]", "\x1b]0;owned\x07"):
            result = invoke("show-run", run_id, state=tmp_path)
            assert result.exit_code == 1
            assert result.exception is None or isinstance(result.exception, SystemExit)
            assert "\x1b" not in result.stderr and "\x07" not in result.stderr
            assert visible(run_id) in result.stderr

    def test_plan_lines_escape_user_text_when_coloured(self) -> None:
        plan = Plan(
            actions=(),
            violations=(),
            fingerprint="sha256:0",
            prior_state={},
            notes=("[/x] \x1b[2J",),
        )
        assert plan_lines(plan, colour=True)[-1] == "note: \\[/x] \\x1b[2J"
        assert plan_lines(plan, colour=False)[-1] == "note: [/x] \\x1b[2J"

    def test_validate_json_keeps_control_characters_as_json_escapes(self, tmp_path: Path) -> None:
        text = VM.format(name="WEB01", switch="vSwitch-VM").replace(
            "vcpus: 1", 'vcpus: 1\n  "\\e[2Jx": 1'
        )
        folder = write_set(tmp_path / "set", {**base_set(), "web.yaml": text.encode()})
        result = invoke("validate", "--format", "json", str(folder))
        assert "\x1b" not in result.stdout
        assert "\\u001b[2Jx" in result.stdout
        [error] = json.loads(result.stdout)["errors"]
        assert error["message"] == "unknown field '\x1b[2Jx'"
        text_lines = invoke("validate", str(folder)).stdout
        assert "spec.\\x1b[2Jx: unknown field '\\x1b[2Jx'" in text_lines


class TestCommandLineInput:
    """Every command answers bad arguments with a clear error and exit 1."""

    @pytest.fixture
    def state(self, tmp_path: Path) -> Path:
        world = Path(__file__).resolve().parents[1] / "manifests" / "worlds" / "demo.yaml"
        assert invoke("sim", "init", str(world), state=tmp_path / "state").exit_code == 0
        return tmp_path / "state"

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (b"[1, 2", "it is not JSON"),
            (b"[1, 2]", "not a plan: the file holds no JSON object"),
            (b'{"format_version": 2}', "plan format_version 2 is not 1"),
            (b'{"format_version": 1, "actions": 3}', "not a plan: no list of actions"),
            (b"\xff\xfe\x00", "it is not JSON"),
            (b"[" * 100_000, "it is not JSON"),
        ],
    )
    def test_apply_refuses_a_plan_file_that_is_not_a_plan(
        self, state: Path, tmp_path: Path, content: bytes, message: str
    ) -> None:
        plan_file = tmp_path / "plan.json"
        plan_file.write_bytes(content)
        result = invoke("apply", "--plan", str(plan_file), "--auto-approve", state=state)
        assert result.exit_code == 1
        assert f"error: refusing the plan in {plan_file}: {message}" in result.stderr
        assert "nothing was changed" in result.stderr

    @pytest.mark.parametrize("command", ["validate", "plan", "apply"])
    def test_a_missing_path(self, state: Path, command: str) -> None:
        # Through the program's own entry point: plan and apply raise ManifestLoadError to it.
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", "--state-dir", str(state), command, "nosuch"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1
        assert "nosuch:0:0: -: -: no such file or folder" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr

    def test_sim_init_with_desired_manifests_is_one_error(self, tmp_path: Path) -> None:
        result = invoke("sim", "init", str(BASE), state=tmp_path / "state")
        assert result.exit_code == 1
        assert result.stdout.splitlines() == [
            f"{BASE}/vms.yaml:2:1: VirtualMachine/TEST01: status: no object has a status: these "
            "look like desired manifests, not a world (a world file states what is observed: "
            "status.node for every VM)"
        ]

    def test_an_unreadable_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        folder = write_set(tmp_path / "set", base_set())
        real = Path.read_bytes

        def read_bytes(path: Path) -> bytes:
            if path.name == "vms.yaml":
                raise PermissionError(13, "Permission denied")
            return real(path)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
        result = invoke("validate", str(folder))
        assert result.exit_code == 1
        # The cluster's test_vm is in the unreadable file: not reported as unknown.
        assert result.stdout.splitlines() == [
            f"{folder}/vms.yaml:0:0: -: -: cannot read the file: Permission denied "
            "(a readable file)"
        ]

    def test_sim_init_with_a_file_that_is_not_a_world(self, tmp_path: Path) -> None:
        world = tmp_path / "world.yaml"
        world.write_bytes(b"\xff\xfe" + "just: text\n".encode("utf-16-le"))
        result = invoke("sim", "init", str(world), state=tmp_path / "state")
        assert result.exit_code == 1
        assert "a manifest must be a mapping" not in result.stdout
        assert result.stdout.startswith(f"{world}:1:1: -: apiVersion: missing apiVersion")


def _located(result: LoadResult, files: dict[str, bytes], folder: Path) -> None:
    """Every error names a file of the set and a line inside it, on one printed line."""
    lines = {str(folder / name): content.count(b"\n") + 1 for name, content in files.items()}
    for error in result.errors:
        printed = str(error)
        assert "\n" not in printed and "\x1b" not in printed
        assert error.file in lines, printed
        # UTF-16 files count their newlines in other bytes: allow their doubled byte count.
        assert 1 <= error.line <= 2 * lines[error.file] + 1, printed


@st.composite
def damaged_bytes(draw: st.DrawFn) -> dict[str, bytes]:
    """The base set with bytes inserted, replaced or cut in one file."""
    files = base_set()
    name = draw(st.sampled_from(sorted(files)))
    data = files[name]
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        payload = draw(st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=6))
        cut = draw(st.integers(0, 8))
        data = data[:at] + payload + data[at + cut :]
    files[name] = data
    return files


@st.composite
def schema_mistakes(draw: st.DrawFn) -> dict[str, bytes]:
    """The base set with one document changed: a value, a key or a shape."""
    files = base_set()
    name = draw(st.sampled_from(sorted(files)))
    docs = [d for d in yaml.safe_load_all(files[name]) if d is not None]
    index = draw(st.integers(0, len(docs) - 1))
    docs[index] = mutate_document(random.Random(draw(st.integers(0, 2**32))), docs[index])
    value = draw(st.sampled_from(VALUES) | st.integers() | st.floats() | st.text(max_size=8))
    if draw(st.booleans()) and isinstance(docs[index].get("spec"), dict):
        docs[index]["spec"][draw(st.sampled_from(["vcpus", "memory_mib", "nodes", "cluster"]))] = (
            value
        )
    flow = draw(st.sampled_from([None, False, True]))
    files[name] = yaml.safe_dump_all(docs, default_flow_style=flow, allow_unicode=True).encode()
    return files


bad_sets = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class TestAnyInput:
    """Whatever the bytes, validate returns errors at lines of the set, or a valid estate."""

    @bad_sets
    @given(damaged_bytes())
    def test_damaged_bytes(self, files: dict[str, bytes]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_set(Path(tmp), files)
            _located(load_paths([str(folder)]), files, folder)

    @bad_sets
    @given(schema_mistakes())
    def test_schema_mistakes(self, files: dict[str, bytes]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_set(Path(tmp), files)
            _located(load_paths([str(folder)]), files, folder)


PLATFORM_CASE = """apiVersion: reconciler/v1
kind: Cluster
metadata: {{name: c}}
spec: {{platform: "{platform}", nodes: [h1], quorum: {{mode: node_majority}}}}
---
apiVersion: reconciler/v1
kind: Node
metadata: {{name: h1}}
spec:
  cluster: c
  hardware: {{model: m, cpu: c, memory_mib: 4294967296, firmware: f, driver_set: d,
    patch_level: p}}
---
apiVersion: reconciler/v1
kind: VirtualMachine
metadata: {{name: vm}}
spec: {{cluster: c, generation: {generation}, vcpus: {vcpus}, memory_mib: {memory},
  power_state: "off"}}
"""


class TestPlatformMaximaTable:
    """The largest VM each release runs (Microsoft's Hyper-V scalability tables), by hand.
    One step over a maximum is 2 MiB: memory is set in 2 MB steps."""

    @pytest.mark.parametrize(
        ("platform", "generation", "vcpus", "memory_mib", "fields"),
        [
            ("2008r2", 1, 4, 65536, []),
            ("2008r2", 1, 5, 65536, ["spec.vcpus"]),
            ("2008r2", 1, 4, 65538, ["spec.memory_mib"]),
            ("2012r2", 2, 64, 1048576, []),
            ("2012r2", 1, 65, 1048578, ["spec.memory_mib", "spec.vcpus"]),
            ("2016", 2, 240, 12582912, []),
            ("2016", 2, 241, 12582914, ["spec.memory_mib", "spec.vcpus"]),
            ("2016", 1, 65, 1048576, ["spec.vcpus"]),
            ("2022", 1, 64, 1048578, ["spec.memory_mib"]),
            ("2025", 2, 2048, 251658240, []),
            ("2025", 1, 65, 1048576, ["spec.vcpus"]),
        ],
    )
    def test_vm_size(
        self, platform: str, generation: int, vcpus: int, memory_mib: int, fields: list[str]
    ) -> None:
        text = PLATFORM_CASE.format(
            platform=platform, generation=generation, vcpus=vcpus, memory=memory_mib
        )
        result = load_text(text, "platform.yaml")
        assert sorted(e.field for e in result.problems()) == fields, lines_of(result)


class TestFuzzRun:
    """bench/fuzz.py runs, and ends with its one-line table."""

    def test_a_short_run_ends_with_the_table(self) -> None:
        fuzz = Path(__file__).resolve().parents[1] / "bench" / "fuzz.py"
        result = subprocess.run(
            [sys.executable, str(fuzz), "--count", "12", "--workers", "1", "--seed", "7"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        last = result.stdout.splitlines()[-1]
        assert re.fullmatch(
            r"fuzz: 12 sets, 0 tracebacks, 0 hangs/memory, 0 unlocated errors, "
            r"(\d+) located, (\d+) valid",
            last,
        ), result.stdout
