"""What differs between the fingerprints (results/fingerprint.py) of two sides of a
comparison: compare's `changed` column, one text per verdict, the items known to move
performance first.

ITEMS is the order: a PCIe link below its maximum (on either side, or changed), the
power limit, ECC error counts, ECC mode, retired pages or remapped rows, MIG mode,
persistence mode, clocks, then versions (driver, CUDA, cuDNN, NCCL, framework, VBIOS),
the CPU governor, the kernel and the CPU model. Each item reads "NEW <- BASE" ("pcie
link x8 (max x16) <- x16; power limit 300 W <- 350 W; driver 560.35.03 <- 550.54.15").

A side of several runs: a fact the runs agree on is the side's; one they do not agree on
is said once ("base runs differ among themselves: driver 550.54.15 / 560.35.03") and not
compared. A run without a fingerprint (written before schema 7, or a trials.csv without
its run.json) has nothing to compare: "no fingerprint (older run)".

The PCIe generation: an idle GPU lowers it to save power, so a generation below the
maximum on both sides alike is not listed (the width does not drop that way: a width
below its maximum always is).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from gpubench.results.fingerprint import values

Side = Dict[str, Any]  # key -> the value all of a side's runs agree on (None: unknown)
NO_FINGERPRINT = "no fingerprint (older run)"


def _on_off(value: Any) -> str:
    return "on" if value else "off"


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pair(label: str, new: Any, base: Any, fmt: Callable[[Any], str] = _plain) -> str:
    return f"{label} {fmt(new)} <- {fmt(base)}"


def _known(*vs: Any) -> bool:
    return all(v is not None for v in vs)


def pcie(base: Side, new: Side) -> List[str]:
    keys = ("pcie_gen", "pcie_gen_max", "pcie_width", "pcie_width_max")
    if not all(_known(base.get(k), new.get(k)) for k in keys):
        return []
    show_gen = base["pcie_gen"] != new["pcie_gen"]

    def link(side: Side, gen: str, width: str) -> str:
        return (f"gen{side[gen]} " if show_gen else "") + f"x{side[width]}"

    def below(side: Side) -> bool:
        return side["pcie_width"] < side["pcie_width_max"] or (
            show_gen and side["pcie_gen"] < side["pcie_gen_max"])

    def text(side: Side) -> str:
        shown = link(side, "pcie_gen", "pcie_width")
        return shown + (f" (max {link(side, 'pcie_gen_max', 'pcie_width_max')})"
                        if below(side) else "")

    changed = show_gen or base["pcie_width"] != new["pcie_width"]
    if changed:
        return [f"pcie link {text(new)} <- {text(base)}"]
    if below(new) or below(base):
        return [f"pcie link {text(new)} on both sides"]
    return []


def power_limit(base: Side, new: Side) -> List[str]:
    b, n = base.get("power_limit_w"), new.get("power_limit_w")
    if not _known(b, n) or b == n:
        return []
    return [_pair("power limit", n, b, lambda w: f"{w:g} W")]


def ecc_counts(base: Side, new: Side) -> List[str]:
    out = []
    for error in ("uncorrected", "corrected"):
        for counter in ("aggregate", "volatile"):
            key = f"ecc_{counter}_{error}"
            b, n = base.get(key), new.get(key)
            if _known(b, n) and b != n:
                out.append(_pair(f"ECC {error} errors ({counter})", n, b)
                           + (" (grew)" if n > b else ""))
    return out


def _mode(label: str, key: str) -> Callable[[Side, Side], List[str]]:
    """A mode with a pending state: "ECC on <- off", "(off after reset)" when pending
    differs from current."""
    def describe(base: Side, new: Side) -> List[str]:
        pending = f"{key}_pending"

        def text(side: Side) -> str:
            now, later = side.get(key), side.get(pending)
            return _on_off(now) + (f" ({_on_off(later)} after reset)"
                                   if later is not None and later != now else "")
        if base.get(key) is None or new.get(key) is None or text(base) == text(new):
            return []
        return [f"{label} {text(new)} <- {text(base)}"]
    return describe


def memory_repairs(base: Side, new: Side) -> List[str]:
    labels = (("retired_pages_dbe", "retired pages (double-bit)"),
              ("retired_pages_sbe", "retired pages (single-bit)"),
              ("retired_pages_pending", "page retirement pending"),
              ("remapped_rows_uncorrected", "remapped rows (uncorrectable)"),
              ("remapped_rows_corrected", "remapped rows (correctable)"),
              ("remapped_rows_pending", "row remapping pending"),
              ("remapped_rows_failure", "row remapping failed"))
    out = []
    for key, label in labels:
        b, n = base.get(key), new.get(key)
        if _known(b, n) and b != n:
            fmt = (lambda v: "yes" if v else "no") if isinstance(n, bool) else _plain
            out.append(_pair(label, n, b, fmt))
    return out


def _simple(label: str, key: str, fmt: Callable[[Any], str] = _plain
            ) -> Callable[[Side, Side], List[str]]:
    def describe(base: Side, new: Side) -> List[str]:
        b, n = base.get(key), new.get(key)
        return [_pair(label, n, b, fmt)] if _known(b, n) and b != n else []
    return describe


MHZ = lambda v: f"{v:g} MHz"  # noqa: E731
# (name, describe): in the order they are listed, those known to move performance first
ITEMS: Tuple[Tuple[str, Callable[[Side, Side], List[str]]], ...] = (
    ("pcie", pcie),
    ("power limit", power_limit),
    ("ecc counts", ecc_counts),
    ("ecc mode", _mode("ECC", "ecc_mode")),
    ("memory repairs", memory_repairs),
    ("mig", _mode("MIG", "mig_mode")),
    ("persistence", _simple("persistence", "persistence_mode", _on_off)),
    ("max sm clock", _simple("max SM clock", "max_sm_clock_mhz", MHZ)),
    ("max mem clock", _simple("max memory clock", "max_mem_clock_mhz", MHZ)),
    ("app sm clock", _simple("application SM clock", "app_sm_clock_mhz", MHZ)),
    ("app mem clock", _simple("application memory clock", "app_mem_clock_mhz", MHZ)),
    ("driver", _simple("driver", "driver_version")),
    ("cuda driver", _simple("CUDA driver", "cuda_driver_version")),
    ("cuda runtime", _simple("CUDA runtime", "cuda_runtime_version")),
    ("cudnn", _simple("cuDNN", "cudnn_version")),
    ("nccl", _simple("NCCL", "nccl_version")),
    ("framework", _simple("framework", "framework")),
    ("vbios", _simple("VBIOS", "vbios_version")),
    ("cpu governor", _simple("CPU governor", "cpu_governor")),
    ("kernel", _simple("kernel", "kernel")),
    ("cpu model", _simple("CPU model", "cpu_model")),
)
# Facts no item compares alone (default_power_limit_w: the limit in force is what counts;
# pcie_gen_max: a generation below it is listed only where the generations differ;
# the *_max keys and pending states are read by their items).
SHOWN_WITH_OTHERS = ("default_power_limit_w", "pcie_gen_max")


def differences(base: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """The items that differ between two fingerprints' facts (one side each), in ITEMS'
    order; [] when they are the same."""
    return [text for _, describe in ITEMS for text in describe(dict(base), dict(new))]


def agreed(fingerprints: Sequence[Mapping[str, Any]]) -> Tuple[Side, Dict[str, List[Any]]]:
    """A side's facts: those all its runs agree on, and the others with their values
    (unknown values left out)."""
    seen: Dict[str, List[Any]] = {}
    for fingerprint in fingerprints:
        for key, value in values(fingerprint).items():
            if value is not None and value not in seen.setdefault(key, []):
                seen[key].append(value)
    side = {key: found[0] for key, found in seen.items() if len(found) == 1}
    mixed = {key: found for key, found in seen.items() if len(found) > 1}
    return side, mixed


def changed(base: Sequence[Optional[Mapping[str, Any]]],
            new: Sequence[Optional[Mapping[str, Any]]], names: Tuple[str, str] = ("base", "new")
            ) -> str:
    """compare's `changed` text for one verdict: `base` and `new` hold each run's
    fingerprint (None: the run has none)."""
    notes: List[str] = []
    sides = []
    for name, prints in zip(names, (base, new)):
        have = [p for p in prints if p]
        missing = len(prints) - len(have)
        if missing and have:
            notes.append(f"{name}: {missing} of {len(prints)} runs without a fingerprint "
                         f"(older runs)")
        side, mixed = agreed(have)
        if mixed:
            notes.append(f"{name} runs differ among themselves: " + ", ".join(
                f"{key} {' / '.join(_plain(v) for v in found)}" for key, found in mixed.items()))
        sides.append((side, bool(have)))
    (base_side, base_has), (new_side, new_has) = sides
    if not base_has or not new_has:
        if not base_has and not new_has:
            return NO_FINGERPRINT
        return f"{names[0] if not base_has else names[1]}: {NO_FINGERPRINT}"
    return "; ".join(differences(base_side, new_side) + notes)


def runs_by_configuration(frame: Any, key: Sequence[str]) -> Dict[Tuple[str, ...], List[str]]:
    """configuration (compare's match key) -> the run_ids holding it, in order."""
    from gpubench.results.schema import configuration_key

    present = [c for c in key if c in frame.columns]
    runs: Dict[Tuple[str, ...], List[str]] = {}
    columns = frame[present + ["run_id"]] if "run_id" in frame.columns else None
    if columns is None:
        return runs
    for row in columns.itertuples(index=False, name=None):
        config = configuration_key(dict(zip(present, row[:-1])), key)
        found = runs.setdefault(config, [])
        if str(row[-1]) not in found:
            found.append(str(row[-1]))
    return runs


def with_changes(table: Any, base: Any, new: Any, key: Sequence[str],
                 prints: Mapping[str, Optional[Mapping[str, Any]]]) -> Any:
    """`table` (compare's verdicts of `new` against `base`) with its `changed` column
    filled: per verdict, what differs between the two sides' fingerprints (`prints`:
    run_id -> fingerprint or None)."""
    from gpubench.results.schema import configuration_key

    runs = {"base": runs_by_configuration(base, key), "new": runs_by_configuration(new, key)}
    texts = []
    for _, row in table.iterrows():
        config = configuration_key({c: row.get(c) for c in key}, key)
        sides = [[prints.get(run) for run in runs[name].get(config, [])] for name in ("base", "new")]
        texts.append(changed(*sides) if sides[0] and sides[1] else "")
    table = table.copy()
    table["changed"] = texts
    return table
