"""Create/start/kill/wait/delete of real containers through the library, as the engine
uses it: states, Docker's exit codes, errors, logs, exec, pause, and that delete leaves
nothing behind."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from pystack.errors import Conflict, NotFound, UserError
from rtutil import new_id, run_container


def test_exit_code_and_output(runtime, make_bundle, overlay):
    b = make_bundle(["sh", "-c", "echo out; echo err >&2; exit 3"])
    code, out = run_container(runtime, b, overlay())
    assert code == 3
    assert out.splitlines() == ["out", "err"]


def test_states_and_signal_exit_codes(runtime, make_bundle, overlay, no_leaks):
    b = make_bundle(["sleep", "100"])
    cid = new_id()
    st = runtime.create(cid, b, **overlay())
    assert st["status"] == "created" and st["pid"] > 0 and st["id"] == cid
    pid = st["pid"]
    # the init waits before the user's program: it is not sleep yet
    assert "sleep" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    runtime.start(cid)
    assert runtime.state(cid)["status"] == "running"
    assert runtime.state(cid)["startedAt"].endswith("Z")
    with pytest.raises(Conflict):
        runtime.start(cid)
    with pytest.raises(Conflict):
        runtime.delete(cid)
    # as in Docker, PID 1 without a handler ignores SIGTERM (the kernel protects it)...
    runtime.kill(cid, "TERM")
    with pytest.raises(TimeoutError):
        runtime.wait(cid, timeout=0.3)
    # ...but not SIGKILL from outside; exit code 128+9
    runtime.kill(cid, "SIGKILL")
    assert runtime.wait(cid, timeout=10) == 128 + signal.SIGKILL
    st = runtime.state(cid)
    assert st["status"] == "stopped" and st["exitCode"] == 137 and st["finishedAt"]
    runtime.delete(cid)
    with pytest.raises(NotFound):
        runtime.state(cid)
    assert not os.path.exists(f"/proc/{pid}")
    no_leaks()


def test_sigkill_is_137_and_force_delete(runtime, make_bundle, overlay, cgroup_parent):
    b = make_bundle(["sleep", "100"])
    cid = new_id()
    runtime.create(cid, b, **overlay())
    runtime.start(cid)
    pids = runtime.ps(cid)
    assert runtime.state(cid)["pid"] in pids
    runtime.kill(cid, signal.SIGKILL)
    assert runtime.wait(cid, timeout=10) == 137
    runtime.delete(cid)
    # cgroups of the container are gone
    assert not any(Path(d, cgroup_parent, cid).exists() for d in Path("/sys/fs/cgroup").iterdir())
    cid2 = new_id()
    runtime.create(cid2, b, **overlay())
    runtime.start(cid2)
    pid = runtime.state(cid2)["pid"]
    runtime.delete(cid2, force=True)
    assert not os.path.exists(f"/proc/{pid}")


def test_delete_created_container(runtime, make_bundle, overlay, no_leaks):
    b = make_bundle(["true"])
    cid = new_id()
    pid = runtime.create(cid, b, **overlay())["pid"]
    runtime.delete(cid, force=True)
    assert not os.path.exists(f"/proc/{pid}")
    assert runtime.list() == []
    no_leaks()


def test_errors_are_clear(runtime, make_bundle, overlay, tmp_path):
    b = make_bundle(["/no/such/program"])
    with pytest.raises(UserError) as e:
        runtime.create(new_id(), b, **overlay())
    assert "/no/such/program" in str(e.value) and e.value.exit_code == 127
    b2 = make_bundle(["nosuchcmd"])
    with pytest.raises(UserError, match="executable file not found"):
        runtime.create(new_id(), b2, **overlay())
    assert runtime.list() == []  # nothing half-created
    with pytest.raises(UserError, match="config.json"):
        runtime.create(new_id(), tmp_path)
    with pytest.raises(UserError, match="invalid container id"):
        runtime.create("../x", b, **overlay())
    with pytest.raises(NotFound):
        runtime.kill("nope", "TERM")
    b3 = make_bundle(["true"], edit=lambda s: s["linux"].setdefault("sysctl", {}).update(
        {"kernel.panic": "1"}))
    with pytest.raises(UserError, match="kernel.panic"):
        runtime.create(new_id(), b3, **overlay())
    cid = new_id()
    b4 = make_bundle(["sleep", "10"])
    runtime.create(cid, b4, **overlay())
    with pytest.raises(Conflict):
        runtime.create(cid, b4, **overlay())
    runtime.delete(cid, force=True)


def test_refused_cgroup_limit_leaves_nothing(runtime, make_bundle, overlay, tmp_path,
                                            cgroup_parent, no_leaks):
    """The library makes the cgroups while the container's init builds its mounts: a limit
    the kernel refuses still fails the create with the field's name, and takes the
    half-built container (state directory, cgroups, mounts) with it; the next one runs."""
    cpus = os.cpu_count() or 1
    b = make_bundle(["true"], edit=lambda s: s["linux"]["resources"].setdefault(
        "cpu", {}).update({"cpus": str(cpus + 7)}))
    cid = new_id()
    with pytest.raises(UserError, match=r"linux\.resources\.cpu\.cpus"):
        runtime.create(cid, b, **overlay())
    assert runtime.list() == [] and not (tmp_path / "state" / cid).exists()
    assert not any(Path(d, cgroup_parent, cid).exists() for d in Path("/sys/fs/cgroup").iterdir())
    code, out = run_container(runtime, make_bundle(["echo", "ok"]), overlay())
    assert (code, out) == (0, "ok\n")
    no_leaks()


def test_json_file_logs_with_rotation(runtime, make_bundle, overlay, tmp_path):
    b = make_bundle(["sh", "-c", "for i in $(seq 1 300); do echo line$i; done; "
                                 "echo oops >&2; printf tail"])
    cid = new_id()
    log = tmp_path / "logs" / f"{cid}-json.log"
    runtime.create(cid, b, log_path=log, log_opts={"max-size": "2k", "max-file": "3"}, **overlay())
    runtime.start(cid)
    assert runtime.wait(cid, timeout=20) == 0
    runtime.delete(cid)
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == [log.name, log.name + ".1", log.name + ".2"]
    for f in log.parent.iterdir():
        assert f.stat().st_size < 2000 + 200
    from pystack.runtime.jsonlog import read_logs
    entries = list(read_logs(log, 3))
    for e in entries:
        assert set(e) == {"log", "stream", "time"}
        assert len(e["time"]) == len("2024-01-01T00:00:00.123456789Z") and e["time"].endswith("Z")
    stdout = [e["log"] for e in entries if e["stream"] == "stdout"]
    assert [e["log"] for e in entries if e["stream"] == "stderr"] == ["oops\n"]
    assert stdout[-1] == "tail"  # the last line without a newline, written at EOF
    # rotation dropped the oldest lines only: the rest are in order without gaps
    nums = [int(x[4:]) for x in stdout[:-1]]
    assert nums == list(range(nums[0], 301)) and nums[0] > 1


def test_logs_outlive_the_caller(make_bundle, overlay, tmp_path, cgroup_parent):
    """The shim keeps logging and records the exit after the Runtime (and its fork server)
    that started the container is gone."""
    from pystack.runtime import Runtime
    b = make_bundle(["sh", "-c", "sleep 1; echo late; exit 4"])
    cid = new_id()
    log = tmp_path / "late.log"
    rt = Runtime(tmp_path / "state")
    rt.create(cid, b, log_path=log, **overlay())
    rt.start(cid)
    rt.close()
    del rt
    rt2 = Runtime(tmp_path / "state")
    try:
        assert rt2.wait(cid, timeout=20) == 4
        assert json.loads(log.read_text().splitlines()[-1])["log"] == "late\n"
        assert rt2.state(cid)["exitCode"] == 4
    finally:
        rt2.delete(cid, force=True)
        rt2.close()


def test_exec_pipes_env_user_and_exit(runtime, make_bundle, overlay):
    b = make_bundle(["sleep", "100"])
    cid = new_id()
    runtime.create(cid, b, **overlay())
    runtime.start(cid)
    try:
        p = runtime.exec(cid, {"args": ["sh", "-c", "read x; echo got $x; id -u; echo $FOO;"
                                        " hostname; exit 9"],
                               "env": ["PATH=/bin:/usr/bin", "FOO=bar"],
                               "user": {"uid": 1000, "gid": 1000}})
        p.stdin.write(b"hello\n")
        p.stdin.close()
        out = p.stdout.read().decode()
        assert p.wait(10) == 9
        assert out.splitlines() == ["got hello", "1000", "bar", "ctest"]
        p.close()
        # the exec'd process is in the container's pid namespace and cgroup
        p = runtime.exec(cid, {"args": ["sh", "-c", "echo $$; cat /proc/1/cmdline"]})
        out = p.stdout.read().decode()
        assert p.wait(10) == 0
        assert out.split("\n")[1].startswith("sleep")
        p.close()
        with pytest.raises(UserError, match="nosuch") as e:
            runtime.exec(cid, {"args": ["nosuch"]})
        assert e.value.exit_code == 127  # Docker's exit code for a missing command
    finally:
        runtime.delete(cid, force=True)


def test_pause_resume(runtime, make_bundle, overlay):
    b = make_bundle(["sleep", "100"])
    cid = new_id()
    runtime.create(cid, b, **overlay())
    runtime.start(cid)
    try:
        runtime.pause(cid)
        assert runtime.state(cid)["status"] == "paused"
        pid = runtime.state(cid)["pid"]
        stat = Path(f"/proc/{pid}/stat").read_text()
        assert stat[stat.rindex(")") + 2] in "DS"  # frozen tasks sleep in the freezer
        with pytest.raises(Conflict):
            runtime.pause(cid)
        runtime.resume(cid)
        assert runtime.state(cid)["status"] == "running"
        assert runtime.stats(cid)["pids_stats"]["current"] == 1
    finally:
        runtime.delete(cid, force=True)


def test_killed_shim_leaves_a_deletable_container(runtime, make_bundle, overlay, cgroup_parent):
    """A SIGKILLed shim (crash) loses the exit code, not the container: it keeps running,
    reads as stopped once it exits, and delete cleans everything up."""
    cid = new_id()
    runtime.create(cid, make_bundle(["sleep", "30"]), **overlay())
    runtime.start(cid)
    rec = runtime.states.load(cid)
    os.kill(rec["shim_pid"], signal.SIGKILL)
    time.sleep(0.1)
    assert runtime.state(cid)["status"] == "running"
    runtime.kill(cid, "KILL")
    assert runtime.wait(cid, timeout=10) == 255  # nobody recorded the status
    assert runtime.state(cid)["status"] == "stopped"
    runtime.delete(cid)
    assert not any(Path(d, cgroup_parent, cid).exists() for d in Path("/sys/fs/cgroup").iterdir())


def test_parallel_creates_from_threads(runtime, make_bundle, overlay):
    """The engine calls the library from many threads at once: one fork server serves
    them all, and each container gets its own output and exit code."""
    import concurrent.futures
    b = make_bundle(["sh", "-c", "echo $0; exit $0"])

    def one(n: int) -> tuple[int, str]:
        import json as _json
        spec = _json.loads((b / "config.json").read_text())
        spec["process"]["args"] = ["sh", "-c", f"echo n{n}; exit {n}"]
        bn = b.parent / f"par{n}"
        bn.mkdir()
        (bn / "rootfs").mkdir()
        (bn / "config.json").write_text(_json.dumps(spec))
        from rtutil import run_container
        return run_container(runtime, bn, overlay())

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(1, 13)))
    assert results == [(n, f"n{n}\n") for n in range(1, 13)]
    assert runtime.list() == []


def test_fork_server_restarts_after_being_killed(runtime, make_bundle, overlay):
    b = make_bundle(["sh", "-c", "exit 2"])
    assert run_container(runtime, b, overlay())[0] == 2
    server = runtime._fs.proc
    server.kill()
    server.wait()
    assert run_container(runtime, b, overlay())[0] == 2
    assert runtime._fs.proc.pid != server.pid


def test_fork_server_spare_goes_with_the_server(runtime, make_bundle, overlay):
    """The fork server keeps pre-forked children ready (PYSTACK_RUNTIME_SPARES, 2 by
    default: a container's start does not wait for a fork); one serves one request and is
    replaced (a little later while another is left), and they exit with the server."""
    from pystack.runtime.forkserver import _SPARES
    from pystack.runtime.state import proc_start_time
    b = make_bundle(["sh", "-c", "exit 3"])
    assert run_container(runtime, b, overlay())[0] == 3
    server = runtime._fs.proc.pid

    def children() -> set[int]:
        try:
            with open(f"/proc/{server}/task/{server}/children") as f:
                return {int(x) for x in f.read().split()}
        except FileNotFoundError:
            return set()

    def spares_only(avoid: set[int] = frozenset()) -> set[int]:
        for _ in range(500):  # the finished container's shim is reaped just after its exit
            kids = children()
            if len(kids) == _SPARES and kids != avoid:
                return kids
            time.sleep(0.01)
        return kids

    spares = spares_only()
    assert len(spares) == _SPARES  # they wait
    assert run_container(runtime, b, overlay())[0] == 3
    now = spares_only(avoid=spares)
    assert len(now) == _SPARES and now != spares  # one used, and replaced
    spare = (now - spares).pop()
    # the spare holds the next container's init, pre-forked (PID 1 of a new pid namespace)
    for _ in range(500):
        with open(f"/proc/{spare}/task/{spare}/children") as f:
            inits = [int(x) for x in f.read().split()]
        if inits:
            break
        time.sleep(0.01)
    assert len(inits) == 1
    init = inits[0]
    assert os.readlink(f"/proc/{init}/ns/pid") != os.readlink("/proc/self/ns/pid")
    runtime.close()
    for pid in (spare, init):
        for _ in range(500):
            if proc_start_time(pid) is None:
                break
            time.sleep(0.01)
        assert proc_start_time(pid) is None


def test_plan_json_sends_the_bundle_text_as_the_spec(tmp_path):
    """A create sends config.json's own text as the plan's spec (no re-encoding): the
    receiver parses the same plan as from json.dumps."""
    import json as _json
    from pystack.runtime.container import load_bundle_text, plan_json
    from pystack.runtime.spec import default_spec
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text(_json.dumps(default_spec(["true"]), indent=2) + "\n")
    spec, text = load_bundle_text(str(tmp_path))
    plan = {"id": "x", "dir": "/d", "spec": spec, "log_opts": {}, "lowerdirs": None}
    sent = _json.loads(plan_json({**plan, "spec_text": text}))
    assert sent == _json.loads(_json.dumps(plan))
    assert _json.loads(plan_json({"spec": spec, "spec_text": text})) == {"spec": spec}
