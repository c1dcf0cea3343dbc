"""``reconciler sim ...`` and ``observe`` from the command line: what they print and exit with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sim_strategies import DEMO_WORLD

from reconciler.cli.main import cli, main
from reconciler.model.migration import MIB, LiveMigrationInputs, closed_form, mbps_to_mib_s
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.store import WORLD_FILE

MB_PER_MIB = 1.048576  # decimal MB/s -> MiB/s


def run(state_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--state-dir", str(state_dir), *args])


def flat(text: str) -> str:
    """Output with line wrapping undone (plain output is wrapped at 120 columns)."""
    return " ".join(text.split())


def init_demo(state_dir: Path) -> Result:
    result = run(state_dir, "sim", "init", str(DEMO_WORLD))
    assert result.exit_code == 0, result.output
    return result


def estimate(inputs: LiveMigrationInputs) -> dict[str, float]:
    result = CliRunner().invoke(
        cli,
        [
            "sim",
            "estimate-migration",
            "--memory-mib",
            repr(inputs.memory_mib),
            "--dirty-mib-s",
            repr(inputs.dirty_mib_s),
            "--bandwidth-mib-s",
            repr(inputs.bandwidth_mib_s),
            "--max-passes",
            str(inputs.max_passes),
            "--threshold-kib",
            repr(inputs.threshold_kib),
            "--setup-seconds",
            repr(inputs.setup_seconds),
            "--resume-seconds",
            repr(inputs.resume_seconds),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload: dict[str, float] = json.loads(result.stdout)
    return payload


ISSUE_ROW = LiveMigrationInputs(
    memory_mib=4096,
    dirty_mib_s=10 / MB_PER_MIB,
    bandwidth_mib_s=117.5 / MB_PER_MIB,
    max_passes=10,
    threshold_kib=256,
)
GBE = mbps_to_mib_s(1000)
TEN_GBE = mbps_to_mib_s(10_000)
TABLE = [
    pytest.param(ISSUE_ROW, id="issue-4GiB-10MBs-1GbE"),
    pytest.param(LiveMigrationInputs(1024, 5, GBE, 10, 256), id="1GiB-light"),
    pytest.param(LiveMigrationInputs(16384, 400, TEN_GBE, 5, 256, 2.0, 0.05), id="16GiB-capped"),
    pytest.param(LiveMigrationInputs(8192, 50, GBE, 5, 1024, 2.0, 0.05), id="8GiB-busy-1MiB"),
]


class TestEstimateMigration:
    """``sim estimate-migration --json`` agrees with the closed form within 1%."""

    def test_the_issue_row(self) -> None:
        out = estimate(ISSUE_ROW)
        assert out["total_seconds"] == pytest.approx(39.953, rel=0.01)
        assert out["downtime_seconds"] == pytest.approx(1.918e-3, rel=0.01)
        assert out["passes"] == 4
        assert out["bytes_sent"] / MIB == pytest.approx(4477.0, rel=0.01)
        assert out["dirty_ratio"] == pytest.approx(10 / 117.5)
        assert out["converges"] is True

    @pytest.mark.parametrize("inputs", TABLE)
    def test_agrees_with_the_closed_form(self, inputs: LiveMigrationInputs) -> None:
        out = estimate(inputs)
        formula = closed_form(inputs)
        assert out["passes"] == formula.passes
        assert out["total_seconds"] == pytest.approx(formula.total_seconds, rel=0.01)
        assert out["downtime_seconds"] == pytest.approx(formula.downtime_seconds, rel=0.01)
        assert out["bytes_sent"] == pytest.approx(formula.bytes_sent, rel=0.01)
        assert out["closed_form_total_seconds"] == pytest.approx(formula.total_seconds)

    def test_a_migration_that_does_not_converge_hits_the_pass_cap(self) -> None:
        out = estimate(LiveMigrationInputs(4096, 150, GBE, 10, 256))
        assert out["converges"] is False
        assert out["passes"] == 10
        assert "closed_form_total_seconds" not in out
        # Every round re-sends all of memory: 11 rounds of 4 GiB.
        assert out["bytes_sent"] == 11 * 4096 * MIB

    def test_the_platform_sets_the_default_pass_cap(self) -> None:
        args = ["sim", "estimate-migration", "--memory-mib", "4096", "--dirty-mib-s", "150"]
        args += ["--bandwidth-mib-s", "112", "--json"]
        for platform_name, passes in (("2008r2", 10), ("2016", 5)):
            result = CliRunner().invoke(cli, [*args, "--platform", platform_name])
            assert json.loads(result.stdout)["passes"] == passes

    def test_text_output_names_the_units(self) -> None:
        result = CliRunner().invoke(
            cli,
            [
                *("sim", "estimate-migration", "--memory-mib", "4096"),
                *("--dirty-mib-s", repr(10 / MB_PER_MIB)),
                *("--bandwidth-mib-s", repr(117.5 / MB_PER_MIB)),
            ],
        )
        assert result.exit_code == 0
        assert "total      39.953 s" in result.stdout
        assert "downtime   1.918 ms" in result.stdout


class TestSimInit:
    """``sim init`` creates the world; a broken file gets file:line errors and creates nothing."""

    BROKEN = (
        "apiVersion: reconciler/v1\nkind: Cluster\nmetadata:\n  name: c\nspec:\n"
        '  platform: "2008r2"\n  nodes: [n1]\n  quorum: {mode: bogus}\n---\n'
        "apiVersion: reconciler/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  cluster: c\n"
        "  hardware: {model: m, cpu: c, memory_mib: lots, firmware: f, driver_set: d, "
        "patch_level: p}\n"
    )

    def test_the_demo_world(self, tmp_path: Path) -> None:
        out = flat(init_demo(tmp_path).stdout)
        assert out.startswith(f"created a world in {tmp_path} from {DEMO_WORLD}")
        assert out.endswith("1 cluster(s), 5 node(s), 20 VM(s)")
        assert (tmp_path / WORLD_FILE).exists()
        assert flat(init_demo(tmp_path).stdout).startswith("replaced the world")

    def test_a_broken_world_file(self, tmp_path: Path) -> None:
        world = tmp_path / "broken.yaml"
        world.write_text(self.BROKEN)
        state = tmp_path / "state"
        result = run(state, "sim", "init", str(world))
        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        assert len(lines) == 2
        assert re.match(
            rf"{re.escape(str(world))}:8:\d+: Cluster/c: spec\.quorum\.mode: ", lines[0]
        )
        assert re.match(
            rf"{re.escape(str(world))}:16:\d+: Node/n1: spec\.hardware\.memory_mib: ", lines[1]
        )
        assert "2 error(s) in the world file; no world created" in flat(result.stderr)
        assert not state.exists()

    def test_a_broken_world_file_leaves_the_old_world(self, tmp_path: Path) -> None:
        init_demo(tmp_path)
        before = (tmp_path / WORLD_FILE).read_bytes()
        world = tmp_path / "broken.yaml"
        world.write_text(self.BROKEN)
        assert run(tmp_path, "sim", "init", str(world)).exit_code == 1
        assert (tmp_path / WORLD_FILE).read_bytes() == before


class TestObserveWithoutAWorld:
    """``observe`` with no world says to run ``sim init`` and exits 1."""

    def test_message_and_exit_code(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        state = tmp_path / "empty"
        with pytest.raises(SystemExit) as exit_info:
            main(["--state-dir", str(state), "observe"])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert "no simulated world" in err
        assert "reconciler sim init WORLD.yaml" in err
        assert not (state / WORLD_FILE).exists()

    def test_sim_show_says_the_same(self, tmp_path: Path) -> None:
        result = run(tmp_path, "sim", "show")
        assert result.exit_code == 1
        assert "sim init" in flat(result.stderr)


class TestSimShow:
    """``sim show`` names every node, the quorum mode and state, the switches and the volumes."""

    def test_the_demo_world(self, tmp_path: Path) -> None:
        init_demo(tmp_path)
        out = run(tmp_path, "sim", "show").stdout
        assert "Simulated time: 0.0 s" in out
        for node in ("hv01", "hv02", "hv03", "hv04", "hv05"):
            assert node in out
        assert "quorum node_and_disk_majority (witness: disk), OK, survives 2" in flat(out)
        assert "vSwitch-VM" in out
        assert "hv03: 10,20,30-39" in out
        assert "hv05: missing" in out
        assert re.search(r"CSV01\s*│\s*1024\s*│\s*1024\s*│\s*707\s*│\s*hv01", out)
        assert re.search(r"CSV02\s*│\s*1536\s*│\s*1536\s*│\s*1300\s*│\s*hv02", out)

    def test_shows_a_crashed_node_and_lost_quorum(self, tmp_path: Path) -> None:
        init_demo(tmp_path)
        for node in ("hv01", "hv02", "hv03"):
            run(tmp_path, "sim", "fault", "node-crash", node)
        out = run(tmp_path, "sim", "show").stdout
        assert "4 member(s), 1 up; quorum node_and_disk_majority (witness: disk), LOST" in flat(out)
        assert re.search(r"hv01\s*│\s*yes\s*│\s*down", out)


class TestSimFault:
    """Each ``sim fault`` command changes the world and prints what happened."""

    def test_node_crash_and_recover(self, tmp_path: Path) -> None:
        init_demo(tmp_path)
        crash = run(tmp_path, "sim", "fault", "node-crash", "hv04")
        assert crash.exit_code == 0
        lines = crash.stdout.splitlines()
        assert lines[0] == "hv04 is down"
        assert {line.split()[0] for line in lines[1:]} == {"WEB05", "WEB06", "EXCH01", "APP04"}
        assert all("restarted on" in line for line in lines[1:])
        recover = run(tmp_path, "sim", "fault", "node-recover", "hv04")
        assert recover.stdout == "hv04 is up\n"
        sim = SimProvider(state_dir=tmp_path)
        assert sim.observe().nodes["hv04"].status.state == "up"
        assert [kind for _, kind, _ in sim.store.events()][:2] == ["node_recover", "node_crash"]
        sim.close()

    def test_an_unknown_node(self, tmp_path: Path) -> None:
        init_demo(tmp_path)
        result = run(tmp_path, "sim", "fault", "node-crash", "hv99")
        assert result.exit_code == 1
        assert "no node hv99" in flat(result.stderr)

    def test_fail_migrations_and_slow_link(self, tmp_path: Path) -> None:
        init_demo(tmp_path)
        fail = run(tmp_path, "sim", "fault", "fail-migrations", "2")
        assert fail.stdout == "the next 2 migration(s) will fail\n"
        slow = run(tmp_path, "sim", "fault", "slow-link", "0.25", "--cluster", "prod")
        assert slow.stdout == "live-migration bandwidth now 25% of nominal\n"
        assert run(tmp_path, "sim", "fault", "slow-link", "2").exit_code != 0

    def test_drift_of_a_named_kind(self, tmp_path: Path) -> None:
        init_demo(tmp_path)
        before = SimProvider(state_dir=tmp_path).observe()
        result = run(tmp_path, "sim", "fault", "drift", "--kind", "placement", "--seed", "1")
        assert result.exit_code == 0
        match = re.fullmatch(
            r"drift: VirtualMachine/(\w+) moved (\w+) -> (\w+) by hand\n", result.stdout
        )
        assert match is not None, result.stdout
        vm, source, destination = match.groups()
        after = SimProvider(state_dir=tmp_path).observe()
        assert before.vms[vm].node == source
        assert after.vms[vm].node == destination

    def test_drift_that_cannot_happen(self, tmp_path: Path) -> None:
        init_demo(tmp_path)
        result = run(tmp_path, "sim", "fault", "drift", "--kind", "vlan", "--target", "hv99")
        assert result.exit_code == 1
        assert "no object 'hv99'" in flat(result.stderr)


class TestSimGenerate:
    """``sim generate`` writes manifests that validate and a world that ``sim init`` loads."""

    def test_generate_validate_init(self, tmp_path: Path) -> None:
        out = tmp_path / "gen"
        result = CliRunner().invoke(
            cli,
            [
                *("sim", "generate", "--clusters", "2", "--nodes-per-cluster", "3"),
                *("--vms-per-node", "4", "--drift", "0.1", "--seed", "1", "--out", str(out)),
            ],
        )
        assert result.exit_code == 0, result.output
        assert re.match(r"wrote \d+ file\(s\) to ", result.stdout)
        assert "in 2 cluster(s)" in flat(result.stdout)
        assert (out / "world.yaml").is_file()
        desired = out / "desired"
        assert sorted(desired.rglob("*.yaml"))
        validated = CliRunner().invoke(cli, ["validate", str(desired)])
        assert validated.exit_code == 0, validated.output
        assert "are valid" in flat(validated.stdout)
        state = tmp_path / "state"
        loaded = run(state, "sim", "init", str(out / "world.yaml"))
        assert loaded.exit_code == 0, loaded.output
        assert "2 cluster(s), 6 node(s)" in flat(loaded.stdout)
        world = SimProvider(state_dir=state).observe()
        assert len(world.clusters) == 2
        assert len(world.nodes) == 6

    def test_the_same_seed_writes_the_same_files(self, tmp_path: Path) -> None:
        args = ["sim", "generate", "--clusters", "1", "--nodes-per-cluster", "2"]
        args += ["--vms-per-node", "2", "--seed", "4", "--out"]
        for name in ("a", "b"):
            assert CliRunner().invoke(cli, [*args, str(tmp_path / name)]).exit_code == 0
        files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.yaml"))
        files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.yaml"))
        assert files_a == files_b
        for rel in files_a:
            assert (tmp_path / "a" / rel).read_text() == (tmp_path / "b" / rel).read_text()
