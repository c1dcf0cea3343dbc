"""Benchmark: validate + observe + plan on a generated estate, against a whole-estate DeepDiff.

Run: .venv/bin/python bench/plan.py            (64 clusters x 16 nodes x 25 VMs, 1% drift)
     .venv/bin/python bench/plan.py --quick    (8 x 16 x 25, a few seconds)

Each scenario runs in its own process, so peak memory is its own. Times are wall seconds on
this machine; what to compare is the ratios, measured in the same run:
- ours, cold: no manifest cache (YAML parsed, schemas checked);
- ours, warm: the content-keyed manifest cache filled by the cold run;
- baseline: the same validate and observe, then both sides dumped as manifests and diffed
  with one DeepDiff call over the whole estate (what a naive tool would do), no plan at all.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(scenario: str, desired: str, state: str, cache: str | None) -> None:
    """One measured scenario; prints its timings and peak memory as JSON."""
    from reconciler.engine.planner import make_plan
    from reconciler.manifest.dump import to_documents
    from reconciler.manifest.load import load_paths
    from reconciler.providers.sim.provider import SimProvider

    timings: dict[str, float] = {}
    t = time.perf_counter()
    loaded = load_paths([desired], cache_dir=Path(cache) if cache else None)
    timings["validate"] = time.perf_counter() - t
    assert loaded.estate is not None, [str(e) for e in loaded.errors[:5]]
    t = time.perf_counter()
    provider = SimProvider(state_dir=Path(state))
    observed = provider.observe()
    timings["observe"] = time.perf_counter() - t
    t = time.perf_counter()
    extra: dict[str, Any] = {}
    if scenario == "baseline":
        from deepdiff import DeepDiff

        def keyed(docs: list[dict[str, Any]]) -> dict[str, Any]:
            return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}

        diff = DeepDiff(keyed(to_documents(loaded.estate)), keyed(to_documents(observed)))
        extra["differences"] = sum(len(v) for v in diff.values())
        timings["diff"] = time.perf_counter() - t
    else:
        plan = make_plan(loaded.estate, observed)
        extra["actions"] = len(plan.actions)
        extra["violations"] = len(plan.violations)
        timings["diff"] = time.perf_counter() - t
    timings["total"] = sum(timings.values())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"timings": timings, "peak_mib": peak_mib, **extra}))


def measure(scenario: str, desired: Path, state: Path, cache: Path | None) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", scenario, str(desired), str(state)]
    if cache is not None:
        args.append(str(cache))
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=64)
    parser.add_argument("--nodes-per-cluster", type=int, default=16)
    parser.add_argument("--vms-per-node", type=int, default=25)
    parser.add_argument("--drift", type=float, default=0.01)
    parser.add_argument("--quick", action="store_true", help="8 clusters instead of 64")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        scenario, desired, state, *cache = args.child
        child(scenario, desired, state, cache[0] if cache else None)
        return
    clusters = 8 if args.quick else args.clusters

    from reconciler.providers.sim.generate import generate_estate, write_generated
    from reconciler.providers.sim.provider import SimProvider

    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        gen = generate_estate(
            clusters, args.nodes_per_cluster, args.vms_per_node, args.drift, seed=1
        )
        write_generated(gen, work / "estate")
        provider = SimProvider(state_dir=work / "state")
        provider.init_world(gen.world, "bench")
        provider.close()
        setup = time.perf_counter() - t
        vms = len(gen.desired.vms)
        print(
            f"estate: {clusters} clusters x {args.nodes_per_cluster} nodes x "
            f"{args.vms_per_node} VMs = {vms} VMs, {len(gen.drifted)} drifted objects "
            f"({args.drift:.0%}); generated and loaded in {setup:.1f} s"
        )
        desired = work / "estate" / "desired"
        cache = work / "cache"
        cold = measure("ours", desired, work / "state", None)
        measure("ours", desired, work / "state", cache)  # fills the cache
        warm = measure("ours", desired, work / "state", cache)
        base = measure("baseline", desired, work / "state", None)

    rows = [("ours, cold", cold), ("ours, warm cache", warm), ("baseline (DeepDiff)", base)]
    print()
    print(
        f"{'scenario':<22} {'validate':>9} {'observe':>9} {'diff/plan':>10} {'total':>8} "
        f"{'peak MiB':>9}"
    )
    for label, r in rows:
        t = r["timings"]
        print(
            f"{label:<22} {t['validate']:>8.2f}s {t['observe']:>8.2f}s {t['diff']:>9.2f}s "
            f"{t['total']:>7.2f}s {r['peak_mib']:>9.0f}"
        )
    print()
    print(
        f"plan: {cold['actions']} actions, {cold['violations']} violations; "
        f"baseline found {base['differences']} raw differences and planned nothing"
    )
    step = base["timings"]["diff"] / warm["timings"]["diff"]
    e2e_cold = base["timings"]["total"] / cold["timings"]["total"]
    e2e_warm = base["timings"]["total"] / warm["timings"]["total"]
    print(f"diff+plan step vs one whole-estate DeepDiff: {step:.1f}x faster")
    print(f"end to end vs baseline: {e2e_cold:.1f}x (cold), {e2e_warm:.1f}x (warm)")
    targets = [
        ("warm end to end under 10 s", warm["timings"]["total"] < 10),
        ("plan step at least 20x faster than the DeepDiff baseline", step >= 20),
        ("peak memory under 1.5 GiB", max(r["peak_mib"] for _, r in rows[:2]) < 1536),
    ]
    for name, ok in targets:
        print(f"  [{'met' if ok else 'NOT MET'}] {name}")


if __name__ == "__main__":
    main()
