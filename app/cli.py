"""The `suggestlab` command: serve, worker, demo, db, create-user, simulate."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from app.core.settings import Settings, get_settings


def _worker_env(settings: Settings) -> dict[str, str]:
    # The child must resolve exactly the same database, broker and data folder as this process.
    return {
        **os.environ,
        "SUGGESTLAB_DATA_DIR": str(settings.data_dir),
        "SUGGESTLAB_DATABASE_URL": settings.database_url,
        "SUGGESTLAB_BROKER_URL": settings.broker_url,
    }


def _die_with_parent() -> None:
    """In the child: ask Linux to send SIGTERM when the parent dies, so no worker is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


ROUND_QUEUES = frozenset({"training", "light"})


def worker_niceness(queues: str, base: int) -> int:
    """The niceness a worker of these queues runs at: `base`, or 10 more (at most 19) for one that
    serves only the long background jobs, so a round always goes before a representation."""
    serves_rounds = bool(ROUND_QUEUES & {q.strip() for q in queues.split(",")})
    return base if serves_rounds else min(19, base + 10)


def lower_priority(niceness: int) -> int:
    """Raises this process's niceness to at least `niceness` (never lowers it: an operator's `nice`
    stands); returns the niceness it runs at."""
    current = os.nice(0)
    if niceness > current:
        current = os.nice(niceness - current)
    return current


def start_worker_process(settings: Settings, queues: str = "training,light") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        # Quiet: the embedded worker shares the terminal with the server, so no banner and only warnings.
        [sys.executable, "-m", "app.cli", "worker", "--queues", queues, "--hostname", f"{queues}@%h", "--quiet"],
        env=_worker_env(settings),
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )


class EmbeddedWorkers:
    """The embedded worker processes, watched: one that exits on its own (a crash, the OOM killer)
    is started again, so queued rounds do not wait forever behind a worker that is gone. A worker
    that keeps dying at start-up is retried with a growing pause (up to a minute)."""

    # Rounds in one worker; representation training and simulations in a second, so a round never
    # waits behind either. Each lowers its own priority (`worker_nice`), the second further.
    GROUPS: tuple[str, ...] = ("training,light", "background,simulations")

    def __init__(self, settings: Settings, *, check_every: float = 2.0) -> None:
        self._settings = settings
        self._check_every = check_every
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.processes = {group: start_worker_process(settings, group) for group in self.GROUPS}
        self._started = {group: time.monotonic() for group in self.GROUPS}
        self._pause = dict.fromkeys(self.GROUPS, 1.0)
        self._watch = threading.Thread(target=self._watch_loop, name="embedded-worker-watch", daemon=True)
        self._watch.start()

    def _watch_loop(self) -> None:
        while not self._stopping.wait(self._check_every):
            for group in self.GROUPS:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    code = self.processes[group].poll()
                    if code is None:
                        continue
                    # A worker that ran a while gets a quick restart; one that dies at once backs off.
                    lived = time.monotonic() - self._started[group]
                    pause = 1.0 if lived > 60 else min(60.0, self._pause[group] * 2)
                    self._pause[group] = pause
                print(
                    f"suggestlab: the worker for queues {group} exited (code {code}); starting it again "
                    f"in {pause:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                if self._stopping.wait(pause):
                    return
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self.processes[group] = start_worker_process(self._settings, group)
                    self._started[group] = time.monotonic()

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
        # A round gets the usual grace to finish. A representation or simulation job would need
        # minutes: it is not waited for (its heartbeat goes quiet and a new one is asked for later);
        # the background worker only gets the seconds an idle worker needs to wind down.
        graces = {self.GROUPS[0]: 30.0, self.GROUPS[1]: 10.0}
        stop_worker_processes([(process, graces[group]) for group, process in self.processes.items()])


def start_embedded_workers(settings: Settings) -> EmbeddedWorkers:
    return EmbeddedWorkers(settings)


def _raise_keyboard_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_server_with_worker(app: object, host: str, port: int, log_level: str, workers: EmbeddedWorkers | None) -> None:
    import uvicorn

    # uvicorn re-raises SIGTERM after its graceful shutdown; turned into KeyboardInterrupt here, it
    # unwinds through `finally` so the embedded worker is stopped instead of orphaned.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass
    finally:
        if workers is not None:
            workers.stop()


def stop_worker_processes(workers: list[tuple[subprocess.Popen[bytes], float]]) -> None:
    """Stops each worker, SIGKILLing it after its grace (seconds)."""
    # SIGTERM is Celery's warm shutdown: the running round finishes or, with acks_late, is redelivered.
    # All are told at once: an idle worker takes several seconds to wind down (its loop wakes every
    # 2 s), and one after another those seconds add up.
    running = [(worker, grace) for worker, grace in workers if worker.poll() is None]
    for worker, _ in running:
        worker.send_signal(signal.SIGTERM)
    told = time.monotonic()
    for worker, grace in running:
        try:
            worker.wait(max(0.0, told + grace - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def cmd_serve(args: argparse.Namespace) -> int:
    from app.core.migrate import upgrade
    from app.main import create_app

    settings = get_settings()
    if settings.auto_migrate:
        upgrade(settings)
    workers = start_embedded_workers(settings) if settings.runs_embedded_worker and not args.no_worker else None
    run_server_with_worker(create_app(), args.host, args.port, args.log_level, workers)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    # Before Celery forks its pool: the children inherit the niceness.
    lower_priority(worker_niceness(args.queues, get_settings().worker_nice))
    from worker.celery_app import celery_app

    argv = [
        *(["--quiet"] if args.quiet else []),
        "worker",
        "--loglevel",
        "WARNING" if args.quiet else args.log_level.upper(),
        "--queues",
        args.queues,
        "--concurrency",
        str(args.concurrency),
        "--pool",
        args.pool,
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    if args.quiet:
        import logging
        import warnings

        from celery.exceptions import SecurityWarning

        # Containers and the demo often run as root; the warning says nothing the operator can act on here.
        warnings.filterwarnings("ignore", category=SecurityWarning)
        logging.getLogger("kombu").setLevel(logging.ERROR)
    celery_app.worker_main(argv)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from app.core import migrate

    if args.action == "upgrade":
        migrate.upgrade(get_settings(), args.revision or "head")
    else:
        migrate.downgrade(get_settings(), args.revision or "-1")
    return 0


def cmd_create_user(args: argparse.Namespace) -> int:
    from app.core.db import session_scope
    from app.core.migrate import upgrade
    from app.users import service
    from app.users.orm import Role

    settings = get_settings()
    if settings.auto_migrate:
        upgrade(settings)
    with session_scope(settings) as session:
        user = service.get_by_name(session, args.name)
        if user is None:
            user = service.create(session, name=args.name, role=Role(args.role))
        elif user.role != args.role:
            print(f"user {args.name!r} exists with role {user.role}", file=sys.stderr)
            return 2
        token = service.issue_token(session, user=user)
    print(token)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return run_demo(host=args.host, port=args.port, dataset=args.dataset, batch_size=args.batch_size)


def cmd_simulate(args: argparse.Namespace) -> int:
    from models.simulate import main as simulate_main

    return simulate_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suggestlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (and, in embedded mode, a worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="never start an embedded worker")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument(
        "--queues",
        default="training,light,background,simulations",
        help="comma-separated; compose runs one worker per queue group so long jobs never block rounds",
    )
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--quiet", action="store_true", help="no banner, warnings and errors only")
    worker.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    worker.add_argument("--hostname", default=None)
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(func=cmd_worker)

    demo = sub.add_parser("demo", help="build a demo project from bundled MNIST digits and serve it")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--dataset", default="mnist5k", choices=["mnist5k", "digits"])
    demo.add_argument("--batch-size", type=int, default=50)
    demo.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "downgrade"])
    db.add_argument("revision", nargs="?")
    db.set_defaults(func=cmd_db)

    create_user = sub.add_parser("create-user", help="create a user (or reuse one) and print a new token")
    create_user.add_argument("--name", required=True)
    create_user.add_argument("--role", required=True, choices=["admin", "engineer", "annotator"])
    create_user.set_defaults(func=cmd_create_user)

    from models.simulate_args import add_simulate_arguments

    simulate = sub.add_parser("simulate", help="compare strategies on a labelled dataset, with an oracle")
    add_simulate_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
