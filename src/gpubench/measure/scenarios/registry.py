"""The scenario registry (gpubench/registry.py): names -> factories, each importing its
scenario's module only when asked for, so that naming or listing scenarios imports no
loop (and no numpy). A new scenario is a module of this folder and a line here."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from gpubench.errors import UserError
from gpubench.measure.scenarios.base import Scenario
from gpubench.measure.scenarios.serving import SERVING_SCENARIOS
from gpubench.registry import Registry

Factory = Callable[[], Scenario]


def _throughput() -> Scenario:
    from gpubench.measure.scenarios.throughput import ThroughputScenario
    return ThroughputScenario()


def _time_to_accuracy() -> Scenario:
    from gpubench.measure.scenarios.time_to_accuracy import TimeToAccuracyScenario
    return TimeToAccuracyScenario()


def _collective() -> Scenario:
    from gpubench.measure.scenarios.collective import CollectiveScenario
    return CollectiveScenario()


def _serving(name: str) -> Factory:
    """MLPerf Inference's LoadGen scenarios (serving/streams.py, serving/server.py)."""
    def make() -> Scenario:
        from gpubench.measure.scenarios.serving import server, streams
        return {"single-stream": streams.SingleStreamScenario,
                "multi-stream": streams.MultiStreamScenario, "offline": streams.OfflineScenario,
                "server": server.ServerScenario}[name]()
    return make


SCENARIOS: Registry[Factory] = Registry("scenario", {
    "throughput": _throughput, "time-to-accuracy": _time_to_accuracy, "collective": _collective,
    **{name: _serving(name) for name in SERVING_SCENARIOS}})
_SCENARIOS = SCENARIOS.extra  # what tests put back after registering a scenario


def _generate_throughput() -> Scenario:
    from gpubench.measure.scenarios.generate import GenerateThroughputScenario
    return GenerateThroughputScenario()


def _generate_server() -> Scenario:
    from gpubench.measure.scenarios.serving.generate_server import GenerateServerScenario
    return GenerateServerScenario()


# --mode generate runs its own loops under the scenarios' names: a scenario name means
# the same measurement (back-to-back batches, served arrivals), of generated tokens.
GENERATE_SCENARIOS: Dict[str, Factory] = {"throughput": _generate_throughput,
                                          "server": _generate_server}


def register_scenario(name: str, factory: Factory) -> None:
    """Adds a scenario for this process (tests, plugins)."""
    SCENARIOS.register(name, factory)


def scenario_names() -> List[str]:
    return SCENARIOS.names()


def resolve_scenario(name: str, mode: Optional[str] = None) -> Scenario:
    """The scenario of this name; in --mode generate its generation loop (a name that
    exists but has none: one line)."""
    if mode != "generate":
        return SCENARIOS.get(name)()
    SCENARIOS.get(name)  # an unknown name: the registry's message, with the valid ones
    if name not in GENERATE_SCENARIOS:
        raise UserError(f"scenario {name} does not run --mode generate (it runs: "
                        f"{', '.join(GENERATE_SCENARIOS)})")
    return GENERATE_SCENARIOS[name]()
