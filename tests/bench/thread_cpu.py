#!/usr/bin/python3
"""CPU time per operation, split by process group and thread name, from /proc.

  thread_cpu.py snapshot FILE GROUP=PID[,PID...] ...
      Records utime+stime of every thread of each PID and of its descendants (nginx's
      workers, haproxy's worker), and each thread's run and runqueue-wait time
      (/proc/PID/task/TID/schedstat), with the wall clock, into FILE (JSON).
  thread_cpu.py report BEFORE AFTER [BEFORE AFTER ...] --ops N [--unit hs]
      Prints, per group, the CPU milliseconds per operation of the group and of each
      thread name (threads of the same name summed; exited threads as "(exited)"),
      the same by role (main/event loop, workers, rpc+ops here, gRPC, provider,
      catalog, metrics, background; see ROLES), and the off-CPU time of the main threads that ran meanwhile (a worker blocked or
      idle: wall time minus running and runqueue time), all divided by N. Several
      pairs (rounds of one measurement) are summed; N counts the operations of all.
  thread_cpu.py total BEFORE AFTER [BEFORE AFTER ...] --ops N [--group GROUP]...
      Prints only the CPU milliseconds per operation of the named groups together (all
      groups when none is named).

Threads are grouped by the name they had in the AFTER snapshot (a name set after
BEFORE still groups right). Processes and threads that start between the snapshots
count in full; ones that exit in between are lost, except exited threads of a process
that lives on (its /proc/PID/stat keeps their time).
"""

import argparse
import json
import os
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(path):
    """comm and the fields after it of a /proc stat file (comm may hold spaces)."""
    with open(path) as f:
        text = f.read()
    comm = text[text.index("(") + 1:text.rindex(")")]
    return comm, text[text.rindex(")") + 2:].split()


def _cpu_ticks(fields):
    # Fields after comm start at field 3 (state): utime is field 14, stime 15.
    return int(fields[11]) + int(fields[12])


def _children():
    """Map of parent pid to child pids, for every process now."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            _, fields = _stat_fields(f"/proc/{entry}/stat")
        except (OSError, ValueError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _tree(pid, children):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _process(pid):
    """{comm, ticks, threads: {tid: [comm, ticks, run_ns, wait_ns]}} or None if gone."""
    try:
        comm, fields = _stat_fields(f"/proc/{pid}/stat")
        threads = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                tcomm, tfields = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
                run_ns = wait_ns = 0
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        run_ns, wait_ns = (int(x) for x in f.read().split()[:2])
                except OSError:
                    pass  # No schedstat in this kernel: off-CPU time is not shown.
                threads[tid] = [tcomm, _cpu_ticks(tfields), run_ns, wait_ns]
            except (OSError, ValueError):
                continue  # The thread exited meanwhile.
        return {"comm": comm, "ticks": _cpu_ticks(fields), "threads": threads}
    except (OSError, ValueError):
        return None


def snapshot(groups):
    """groups: {name: [pid, ...]} -> {"wall": s, "groups": {name: {pid: process}}}."""
    children = _children()
    out = {"wall": time.monotonic(), "groups": {}}
    for name, pids in groups.items():
        procs = {}
        for pid in pids:
            for p in _tree(pid, children):
                info = _process(p)
                if info is not None:
                    procs[str(p)] = info
        out["groups"][name] = procs
    return out


def split(before, after, ops):
    """{group: {"total": ms, "threads": {name: [ms, count]}, "offcpu": ms or None,
    "mains": count}}."""
    result = {}
    wall_ns = (after["wall"] - before["wall"]) * 1e9
    for group, procs in after["groups"].items():
        old_procs = before["groups"].get(group, {})
        total = 0.0
        names = {}
        offcpu_ns, mains = 0.0, 0
        comms = sorted({proc["comm"] for proc in procs.values()})
        for pid, proc in procs.items():
            old = old_procs.get(pid)
            if old is not None and old["comm"] != proc["comm"]:
                old = None  # The pid was reused: the earlier one is another process.
            old_threads = old["threads"] if old else {}
            proc_ticks = proc["ticks"] - (old["ticks"] if old else 0)
            total += proc_ticks
            live = 0
            for tid, (comm, ticks, run_ns, wait_ns) in proc["threads"].items():
                prev = old_threads.get(tid, [comm, 0, 0, 0])
                used = ticks - prev[1]
                live += used
                entry = names.setdefault(comm, [0, 0])
                entry[0] += used
                entry[1] += 1
                if tid == pid and run_ns and old and used > 0:
                    # A main thread that worked meanwhile (a master that only waits
                    # is left out): its time neither running nor waiting to run.
                    offcpu_ns += wall_ns - (run_ns - prev[2]) - (wait_ns - prev[3])
                    mains += 1
            exited = proc_ticks - live
            if exited > 0:
                entry = names.setdefault("(exited)", [0, 0])
                entry[0] += exited
        to_ms = 1000.0 / CLK_TCK / ops
        result[group] = {
            "total": total * to_ms,
            "threads": {n: [t * to_ms, c] for n, (t, c) in names.items()},
            "offcpu": offcpu_ns / 1e6 / ops if mains else None,
            "mains": mains,
            "comms": comms,
        }
    return result


def combine(pairs, ops):
    """split() summed over (before, after) pairs, per `ops` operations in all."""
    total = {}
    for before, after in pairs:
        for group, g in split(before, after, 1).items():
            t = total.setdefault(group, {"total": 0.0, "threads": {}, "offcpu": None,
                                         "mains": 0, "comms": []})
            t["comms"] = sorted(set(t["comms"]) | set(g["comms"]))
            t["total"] += g["total"]
            for name, (ms, count) in g["threads"].items():
                entry = t["threads"].setdefault(name, [0.0, 0])
                entry[0] += ms
                entry[1] = max(entry[1], count)
            if g["offcpu"] is not None:
                t["offcpu"] = (t["offcpu"] or 0.0) + g["offcpu"]
                t["mains"] = max(t["mains"], g["mains"])
    for t in total.values():
        t["total"] /= ops
        for entry in t["threads"].values():
            entry[0] /= ops
        if t["offcpu"] is not None:
            t["offcpu"] /= ops
    return total


# What a thread does, by its name: offkey names its threads (offkeyd and the provider),
# gRPC names its own, and a process's main thread (an nginx or haproxy event loop) keeps
# the program's name.
# offkeyd's completion-queue threads (offkey-rpc) also run an operation themselves when
# a worker is idle (WorkerPool::SubmitOrRunHere), so their role is their own.
ROLES = (
    ("workers", ("offkey-worker", "offkey-verify")),
    ("rpc+ops here", ("offkey-rpc",)),
    ("gRPC", ("grpc", "default-executo", "nexting_thread", "resolver-execut",
              "timer_manager", "global-timer", "event_engine")),
    ("provider", ("offkey-dispatch",)),
    ("catalog", ("offkey-catalog",)),
    ("metrics", ("offkey-metrics",)),
    ("background", ("offkey-reload", "offkey-hsm-care")),
    ("exited", ("(exited)",)),
)


def role(name, mains):
    """The role of threads called `name` in a group whose processes are `mains`."""
    for label, prefixes in ROLES:
        if name.startswith(prefixes):
            return label
    return "main/event loop" if name in mains else "other"


def _load(path):
    with open(path) as f:
        return json.load(f)


def main(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot")
    snap.add_argument("file")
    snap.add_argument("groups", nargs="+", metavar="GROUP=PID[,PID...]")
    for name in ("report", "total"):
        p = sub.add_parser(name)
        p.add_argument("snapshots", nargs="+", metavar="BEFORE AFTER")
        p.add_argument("--ops", type=float, required=True)
        if name == "report":
            p.add_argument("--unit", default="op")
            p.add_argument("--indent", default="  ")
        else:
            p.add_argument("--group", action="append", default=[], dest="names")
    args = parser.parse_args(argv)

    if args.command == "snapshot":
        groups = {}
        for spec in args.groups:
            name, _, pids = spec.partition("=")
            try:
                groups[name] = [int(p) for p in pids.split(",") if p]
            except ValueError:
                parser.error(f"'{spec}' is not GROUP=PID[,PID...]")
        with open(args.file, "w") as f:
            json.dump(snapshot(groups), f)
        return 0
    if args.ops <= 0:
        parser.error("--ops must be positive")
    if len(args.snapshots) % 2:
        parser.error("snapshots come in pairs: BEFORE AFTER")
    files = [_load(f) for f in args.snapshots]
    result = combine(list(zip(files[::2], files[1::2])), args.ops)
    if args.command == "total":
        unknown = [n for n in args.names if n not in result]
        if unknown:
            parser.error(f"no group named {', '.join(unknown)}")
        chosen = [g["total"] for n, g in result.items() if not args.names or n in args.names]
        print(f"{sum(chosen):.3f}")
        return 0
    for group, g in result.items():
        parts = [f"{n} {ms:.3f}" + (f" x{c}" if c > 1 else "")
                 for n, (ms, c) in sorted(g["threads"].items(), key=lambda i: -i[1][0])
                 if ms >= 0.0005]
        line = f"{args.indent}{group:<9} {g['total']:7.3f} CPU ms/{args.unit}: " + (
            ", ".join(parts) or "(none)")
        if g["offcpu"] is not None:
            line += (f"; main threads off-CPU {g['offcpu']:.3f} ms/{args.unit}"
                     f" over {g['mains']}")
        print(line)
        roles = {}
        for n, (ms, _) in g["threads"].items():
            r = role(n, g["comms"])
            roles[r] = roles.get(r, 0.0) + ms
        parts = [f"{r} {ms:.3f}" for r, ms in sorted(roles.items(), key=lambda i: -i[1])
                 if ms >= 0.0005]
        print(f"{args.indent}{'':<9} {'':7}    by role: " + (", ".join(parts) or "(none)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
