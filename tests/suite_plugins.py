"""Backends registered only for the tests (through GPUBENCH_PLUGINS, so suite workers
see them too): one that succeeds with real numbers, and ones that abort the process,
hang, raise, refuse a precision, or warn about how it runs; and one whose batches take
a known service time (the serving scenarios' queueing tests), in real time (a sleep) or
on a virtual clock that a test installs (VirtualTime: no real time at all)."""

import os
import sys
import threading
import time

import numpy as np

from gpubench.backends import Backend, DeviceInfo, Step, StepTimer, register_backend
from gpubench.errors import Unsupported


class _Timer(StepTimer):
    def __init__(self, n):
        self.values = [0.0] * n

    def latencies_s(self):
        return np.asarray(self.values)


class MatmulStep(Step):
    """A real (numpy) step: one small matmul per iteration."""

    device = DeviceInfo("cpu", None, "test cpu")

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.a = np.random.default_rng(0).standard_normal((64, 64))
        self.calls = 0
        if behaviour == "warn":  # as a step whose graph partly runs elsewhere says so
            self.warnings = ["test-warn: 2 node(s) of this graph run on the CPU"]

    def make_timer(self, iterations):
        return _Timer(iterations)

    def run(self, iterations, timer=None):
        self.calls += 1
        if self.calls > 2:  # past the first step and a warm-up chunk: misbehave
            if self.behaviour == "hang":
                time.sleep(3600)
            elif self.behaviour == "raise":
                raise RuntimeError("boom: simulated failure in a trial")
            elif self.behaviour == "abort":
                os.abort()
        for i in range(iterations):
            t0 = time.perf_counter()
            self.a @ self.a
            if timer is not None:
                timer.values[i] = time.perf_counter() - t0

    def synchronize(self):
        pass


class BehaviourBackend(Backend):
    framework = "numpy"
    device_kind = "cpu"

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.name = f"test-{behaviour}"

    def is_available(self):
        return True, ""

    def check_config(self, mode, precision):
        if self.behaviour == "unsupported":
            raise Unsupported(f"precision {precision} is not supported on test-unsupported: it supports nothing")

    def prepare(self, workload, config):
        return MatmulStep(self.behaviour)

    def environment(self):
        return {"framework": "numpy", "framework_version": np.__version__}


for _behaviour in ("ok", "hang", "raise", "abort", "unsupported", "warn"):
    register_backend(f"test-{_behaviour}", lambda b=_behaviour: BehaviourBackend(b))


class SecondProcessCrashes(BehaviourBackend):
    """Runs in the first worker process of a run and aborts the next one while it
    builds (--processes): the file named by GPUBENCH_TEST_MARK tells them apart."""

    def prepare(self, workload, config):
        mark = os.environ["GPUBENCH_TEST_MARK"]
        if os.path.exists(mark):
            os.abort()
        open(mark, "w").close()
        return MatmulStep("ok")


register_backend("test-second-process-crashes", lambda: SecondProcessCrashes("second-process-crashes"))


class LogsItsBuilds(BehaviourBackend):
    """Appends the workload's parameters to the file named by GPUBENCH_TEST_MARK each
    time a worker process builds it: the order the processes of a suite ran in."""

    def prepare(self, workload, config):
        with open(os.environ["GPUBENCH_TEST_MARK"], "a") as log:
            log.write(workload.params_str + "\n")
        return MatmulStep("ok")


register_backend("test-logs-builds", lambda: LogsItsBuilds("logs-builds"))


class WrongOutputs(Backend):
    """torch-cpu with its predictions' classes reversed: an engine that runs fast and
    computes something else, for the accuracy gate to catch."""

    name = "test-wrong-outputs"
    framework = "torch"
    device_kind = "cpu"

    def _torch(self):
        from gpubench.backends import get_backend
        return get_backend("torch-cpu")

    def is_available(self):
        return self._torch().is_available()

    def capabilities(self, mode):
        return frozenset({"run", "predict"})

    def prepare(self, workload, config):
        step = self._torch().prepare(workload, config)
        right = step.predict
        step.predict = lambda x: np.ascontiguousarray(right(x)[:, ::-1])
        return step

    def environment(self):
        return self._torch().environment()


register_backend("test-wrong-outputs", WrongOutputs)


class RankStep(MatmulStep):
    """A MatmulStep of a data-parallel run (the torchrun launcher) that misbehaves on
    rank 1 only: the other ranks then wait for it in the protocol's collectives."""

    def __init__(self, behaviour, rank):
        super().__init__(behaviour if rank == 1 else "ok")


class RankBehaviourBackend(BehaviourBackend):
    def __init__(self, behaviour):
        super().__init__(behaviour)
        self.name = f"test-rank1-{behaviour}"

    def capabilities(self, mode):
        return frozenset({"run", "data_parallel"})

    def prepare(self, workload, config):
        return RankStep(self.behaviour, config.ranks.rank)


for _behaviour in ("ok", "hang", "raise", "abort"):
    register_backend(f"test-rank1-{_behaviour}", lambda b=_behaviour: RankBehaviourBackend(b))


class OnlyInPrefix(BehaviourBackend):
    """Available only in the environment whose sys.prefix GPUBENCH_TEST_PREFIX names: a
    framework installed in one environment and not in the one gpubench runs in."""

    def is_available(self):
        if os.path.realpath(sys.prefix) == os.path.realpath(os.environ.get("GPUBENCH_TEST_PREFIX", "")):
            return True, ""
        return False, "its framework is installed in another environment only"


register_backend("test-elsewhere", lambda: OnlyInPrefix("elsewhere"))


# A step whose batch of n samples takes a known time (a sleep: it holds no CPU, so the
# harness's threads are what share the cores), for the serving scenarios' queueing tests.
SERVICE_BASE_S, SERVICE_PER_SAMPLE_S = 0.002, 0.0001


def service_s(samples):
    return SERVICE_BASE_S + SERVICE_PER_SAMPLE_S * samples


class ServiceTimeStep(MatmulStep):
    def __init__(self, batch_size):
        super().__init__("ok")
        self.batch_size = batch_size

    def run(self, iterations, timer=None):
        for i in range(iterations):
            t0 = time.perf_counter()
            time.sleep(service_s(self.batch_size))
            if timer is not None:
                timer.values[i] = time.perf_counter() - t0

    def start_serving(self, library):
        self.library = library
        return {"latency_clock": "host_after_sync"}

    def serve(self, samples):
        self.library[samples]  # gathers the batch, as a server does
        time.sleep(service_s(len(samples)))
        return None


class ServiceTimeBackend(BehaviourBackend):
    def __init__(self):
        super().__init__("service-time")

    def capabilities(self, mode):
        return frozenset({"run", "serve"})

    def prepare(self, workload, config):
        return ServiceTimeStep(config.batch_size)


register_backend("test-service-time", ServiceTimeBackend)


# The same service times on a virtual clock: the server scenario run as a discrete-event
# simulation on one thread, so the queueing it measures is the code's, never the
# machine's (a loaded machine stretches sleeps and delays threads; virtual time neither).
VIRTUAL_TIME = None  # the VirtualTime a test installed: test-virtual-service-time serves on it


class VirtualTime:
    """A clock that moves only when a batch is served (by its service time, service_s)
    or when the serving loop waits (to the next query's arrival, or to the end of the
    wait, whichever is first). `install` puts it under the serving scenarios for one
    test: their clock, the server's query queue (its waits jump instead of sleeping), and
    no arrival thread (the serving loop issues every query that has come due itself)."""

    def __init__(self, start_s: float = 1000.0, stall_s: float = 0.0,
                 stall_below_qps: float = 0.0, stalls: int = 1, stall_from_qps: float = 0.0):
        self.now = start_s
        # hiccups: the first batch of each of the first `stalls` server probes at rates
        # from stall_from_qps to below stall_below_qps is served stall_s late (the
        # machine held the step)
        self.stall_s, self.stalls = stall_s, stalls
        self.stall_qps = (stall_from_qps, stall_below_qps)
        self.armed_s = 0.0

    def take_stall_s(self):
        armed, self.armed_s = self.armed_s, 0.0
        return armed

    def clock(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds

    def queue(self, max_batch, timeout_s, due_s):
        """A QueryQueue on this clock (the server's, when installed)."""
        from gpubench.measure.scenarios.serving.batcher import QueryQueue

        return QueryQueue(max_batch, timeout_s, due_s, clock=self.clock,
                          condition=_VirtualCondition(self, due_s))

    def install(self, monkeypatch):
        from gpubench.measure.scenarios.serving import base as serving, server, streams
        from gpubench.telemetry import contention

        monkeypatch.setattr(sys.modules[__name__], "VIRTUAL_TIME", self)
        for module in (serving, server, streams):
            monkeypatch.setattr(module, "clock", self.clock)
        monkeypatch.setattr(server, "QueryQueue", self.queue)
        monkeypatch.setattr(server, "ArrivalThread", _IssuedByTheServingLoop)
        # this machine's other processes are no part of a simulation: no CPU contention test
        monkeypatch.setattr(contention, "open_cpu_account", lambda: (None, "virtual time"))
        real_probe = server.run_probe

        def run_probe(serve, library_size, rate_qps, *args, **kwargs):
            if self.stalls and self.stall_qps[0] <= rate_qps < self.stall_qps[1]:
                self.armed_s, self.stalls = self.stall_s, self.stalls - 1
            return real_probe(serve, library_size, rate_qps, *args, **kwargs)

        monkeypatch.setattr(server, "run_probe", run_probe)
        return self


class _VirtualCondition(threading.Condition):
    """QueryQueue's condition on a virtual clock: a wait of up to `timeout` seconds moves
    the clock on to the next arrival (which would have woken it) or by `timeout`."""

    def __init__(self, time_, due_s):
        super().__init__()
        self.time, self.due_s = time_, due_s

    def wait(self, timeout=None):
        now = self.time.now
        following = self.due_s[int(np.searchsorted(self.due_s, now, side="right")):]
        target = min(now + (np.inf if timeout is None else timeout),
                     float(following[0]) if following.size else np.inf)
        if not np.isfinite(target):
            raise AssertionError("a wait with nothing to wait for on a virtual clock")
        self.time.now = max(target, np.nextafter(now, np.inf))  # time always moves on
        return False


class _IssuedByTheServingLoop:
    """No arrival thread: on a virtual clock, QueryQueue.next_batch issues each query as
    it comes due (the real thread only wakes an idle serving loop in real time)."""

    def __init__(self, issue_due):
        self.error = None

    def start(self):
        pass

    def join_and_check(self):
        pass


class VirtualServiceStep(ServiceTimeStep):
    def _advance(self, samples):
        if VIRTUAL_TIME is None:
            raise RuntimeError("test-virtual-service-time serves on a VirtualTime that a test "
                               "installs in its own process (tests/suite_plugins.py)")
        VIRTUAL_TIME.advance(service_s(samples))

    def run(self, iterations, timer=None):
        for i in range(iterations):
            self._advance(self.batch_size)
            if timer is not None:
                timer.values[i] = service_s(self.batch_size)

    def serve(self, samples):
        self.library[samples]
        VIRTUAL_TIME.advance(VIRTUAL_TIME.take_stall_s())
        self._advance(len(samples))
        return None


class VirtualServiceTimeBackend(ServiceTimeBackend):
    def __init__(self):
        BehaviourBackend.__init__(self, "virtual-service-time")

    def prepare(self, workload, config):
        return VirtualServiceStep(config.batch_size)


register_backend("test-virtual-service-time", VirtualServiceTimeBackend)


def swallow_an_interrupt():
    """SIGINT to this process, its KeyboardInterrupt swallowed as a finalizer or a
    callback swallows it ("Exception ignored in: ..."; a torch.compile under Ctrl-C)."""
    import signal
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises here at the latest
    except KeyboardInterrupt:
        pass


class SwallowingStep(MatmulStep):
    def run(self, iterations, timer=None):
        if self.calls == 0:  # its first step, where a compile happens
            swallow_an_interrupt()
        super().run(iterations, timer)


class SwallowsInterrupt(BehaviourBackend):
    """An interrupt lands while it builds (prepare) or in its first step, and is
    swallowed there: the run must stop all the same, and its files say interrupted."""

    def prepare(self, workload, config):
        if self.behaviour == "swallows-interrupt-in-prepare":
            swallow_an_interrupt()
            return MatmulStep("ok")
        return SwallowingStep("ok")


for _where in ("prepare", "step"):
    register_backend(f"test-swallows-interrupt-in-{_where}",
                     lambda w=_where: SwallowsInterrupt(f"swallows-interrupt-in-{w}"))


class HangsInPrepare(BehaviourBackend):
    """Never finishes building (a timeout's message names the phase)."""

    def prepare(self, workload, config):
        time.sleep(3600)


register_backend("test-hang-in-prepare", lambda: HangsInPrepare("hang-in-prepare"))


class InfersOnly(BehaviourBackend):
    """Runs inference only (as onnxruntime-* and tensorrt): a run without --mode infers."""

    modes = ("infer",)

    def check_config(self, mode, precision):
        if mode == "train":
            raise Unsupported("test-infer-only runs inference only (use --mode infer)")


register_backend("test-infer-only", lambda: InfersOnly("infer-only"))


class ExitHooks(BehaviourBackend):
    """Prints a line left in Python's buffer and registers an atexit hook that appends to
    the file named by GPUBENCH_TEST_MARK: whether the worker ran Python's finalization.
    test-exit-hooks-child also leaves a child process running, which that hook stops."""

    def prepare(self, workload, config):
        import atexit
        import subprocess

        mark = os.environ["GPUBENCH_TEST_MARK"]
        sys.stdout.write("printed while preparing, never flushed\n")
        child = (subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                 if self.behaviour == "exit-hooks-child" else None)

        def at_exit():
            if child is not None:
                child.kill()
                child.wait()
            with open(mark, "a") as f:
                f.write("atexit ran\n")

        atexit.register(at_exit)
        return MatmulStep("ok")


for _behaviour in ("exit-hooks", "exit-hooks-child"):
    register_backend(f"test-{_behaviour}", lambda b=_behaviour: ExitHooks(b))
