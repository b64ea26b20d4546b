"""Which execution provider runs each node of an ONNX Runtime session, read from ORT's
own profiler. With providers [CUDA, CPU], ORT places a node the CUDA provider has no
kernel for on the CPU without a word, copying tensors across PCIe around it: the run
is then partly a CPU benchmark. (`session.disable_cpu_ep_fallback` would refuse such a
graph outright, but it also refuses the small shape computations the CUDA provider
places on the CPU on purpose, so it cannot tell the two apart.)"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping

KERNEL_SUFFIX = "_kernel_time"  # the profiler's event for a node's kernel


def placement_from_profile(events: List[Mapping[str, Any]]) -> Dict[str, Any]:
    """{"providers": {provider: nodes}, "nodes": [{"node", "op", "provider"}, ...]}
    from the events of ORT's profile (a JSON list; one run is enough)."""
    nodes: Dict[str, Dict[str, str]] = {}
    for event in events:
        name, args = str(event.get("name", "")), event.get("args") or {}
        if event.get("cat") != "Node" or not name.endswith(KERNEL_SUFFIX) or "provider" not in args:
            continue
        node = name[: -len(KERNEL_SUFFIX)]
        nodes[node] = {"node": node, "op": str(args.get("op_name", "")),
                       "provider": str(args["provider"])}
    providers: Dict[str, int] = {}
    for entry in nodes.values():
        providers[entry["provider"]] = providers.get(entry["provider"], 0) + 1
    return {"providers": providers, "nodes": list(nodes.values())}


def profile_placement(make_session: Callable[[Any], Any], options: Any,
                      feed: Mapping[str, Any]) -> Dict[str, Any]:
    """Builds a throwaway session with profiling on (`make_session(options)`), runs it
    once on `feed` and returns its placement. The timed session is built without the
    profiler, which would cost time in every run."""
    folder = tempfile.mkdtemp(prefix="gpubench-ort-profile-")
    try:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "placement")
        session = make_session(options)
        session.run(None, dict(feed))
        with open(session.end_profiling()) as f:
            return placement_from_profile(json.load(f))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def cpu_nodes(placement: Mapping[str, Any], cpu_provider: str = "CPUExecutionProvider") -> List[str]:
    """`op node` of every node placed on the CPU provider."""
    return [f"{n['op']} {n['node']}" for n in placement["nodes"] if n["provider"] == cpu_provider]
