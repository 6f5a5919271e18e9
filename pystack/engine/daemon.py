"""``pystackd``: run the engine in the foreground until SIGTERM/SIGINT.

One daemon per state root: a lock file refuses a second one on the same root, so tests can
run engines side by side with their own ``PYSTACK_ROOT``/``PYSTACK_RUN``/``PYSTACK_HOST``.
"""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path

from pystack import paths

log = logging.getLogger("pystackd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pystackd", description="pystack engine daemon")
    parser.add_argument("--root", default=None, help="state directory (PYSTACK_ROOT)")
    parser.add_argument("--run", default=None, help="runtime directory (PYSTACK_RUN)")
    parser.add_argument("-H", "--host", default=None, help="unix socket path or unix:// URL (PYSTACK_HOST)")
    parser.add_argument("-G", "--group", default=None, help="group allowed to use the socket")
    parser.add_argument("--bridge-subnet", default=None,
                        help="subnet of the default network \"bridge\" (PYSTACK_BRIDGE_SUBNET; default: "
                             "the first of 172.17.0.0/16, 172.18.0.0/16... that no host route uses)")
    parser.add_argument("--default-address-pool", action="append", default=[], metavar="base=SUBNET,size=N",
                        help="where networks without a subnet get theirs (repeatable; "
                             "PYSTACK_DEFAULT_ADDRESS_POOLS, space-separated; default: Docker's "
                             "172.17-31.0.0/16, then 192.168.0.0/16 in /20s)")
    parser.add_argument("-D", "--debug", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.root:
        os.environ["PYSTACK_ROOT"] = args.root
    if args.run:
        os.environ["PYSTACK_RUN"] = args.run
    if args.host:
        os.environ["PYSTACK_HOST"] = args.host
    if args.bridge_subnet:
        os.environ["PYSTACK_BRIDGE_SUBNET"] = args.bridge_subnet
    if args.default_address_pool:
        os.environ["PYSTACK_DEFAULT_ADDRESS_POOLS"] = " ".join(args.default_address_pool)
    if os.environ.get("PYSTACK_DEFAULT_ADDRESS_POOLS"):
        from pystack.engine.engine import address_pools
        from pystack.errors import UserError
        try:
            address_pools(os.environ["PYSTACK_DEFAULT_ADDRESS_POOLS"])
        except UserError as exc:
            print(f"pystackd: {exc}", file=sys.stderr)
            sys.exit(2)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s pystackd %(levelname)s %(message)s")
    if os.geteuid() != 0:
        print("pystackd: must run as root (it creates namespaces, mounts and bridges)", file=sys.stderr)
        sys.exit(1)
    root, run, sock = paths.state_root(), paths.run_root(), paths.engine_socket()
    # children (fork server, shims) carry the engine's roots: recovery finds a killed
    # engine's orphans by them
    os.environ["PYSTACK_ROOT"], os.environ["PYSTACK_RUN"] = str(root), str(run)
    root.mkdir(parents=True, exist_ok=True)
    lock = open(root / "engine.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"pystackd: another engine already uses {root}", file=sys.stderr)
        sys.exit(1)
    try:
        asyncio.run(_run(root, run, sock, args.group))
    except KeyboardInterrupt:
        pass


async def _run(root: Path, run: Path, sock: Path, group: str | None) -> None:
    from pystack.engine.engine import Engine
    from pystack.engine.server import serve

    engine = Engine(root, run)
    startup = getattr(engine, "startup", None)
    if startup is not None:
        await startup()
    runner = await serve(engine, sock, group)
    # what start-up made (modules, routes, records) lives as long as the engine: out of
    # the collector's scans; and young collections ten times rarer (each request makes
    # thousands of short-lived dicts, which the collector otherwise walks again and again)
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    (run / "pystackd.pid").write_text(str(os.getpid()))
    log.info("listening on unix://%s (state %s)", sock, root)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    # stop accepting, end the waits, then give streaming clients (logs -f, events, wait,
    # attach) a short grace: a client that never hangs up must not hold the engine 60 s
    for site in list(runner.sites):
        await site.stop()
    if "containers" in engine.__dict__:
        await engine.containers.close()
    server = runner.server
    if server is not None:
        await server.shutdown(1.0)
    await runner.cleanup()
    shutdown = getattr(engine, "shutdown", None)
    if shutdown is not None:
        await shutdown()
    for path in (sock, run / "pystackd.pid"):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    main()
