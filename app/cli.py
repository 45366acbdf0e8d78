"""The `suggestlab` command: serve, worker, demo, db, create-user, simulate."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from app.core.settings import Settings, get_settings
from app.serving import Supervised, child_env, die_with_parent, port_is_free, stop_processes

ROUND_QUEUES = frozenset({"training", "light"})


def tcp_port(text: str) -> int:
    """An argparse type: a TCP port a server can listen on."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1-65535)")
    return port


def queue_list(text: str) -> str:
    """An argparse type: comma-separated queue names, each one a worker can serve."""
    from app.core.queue import QUEUES  # here, not at the top: Celery is 0.2 s every other command would pay

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUES]
    if unknown or not names:
        what = f"unknown queue {', '.join(map(repr, unknown))}" if unknown else "no queue named"
        raise argparse.ArgumentTypeError(f"{what}; choose from {', '.join(QUEUES)}")
    return ",".join(names)


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
    lower_autogroup(current)
    return current


def lower_autogroup(niceness: int) -> None:
    """Gives this process's autogroup the same niceness when the process leads its own session.

    Linux (with autogroup on, outside any cgroup of its own) shares CPU between sessions first and
    applies a task's niceness only inside its session: a worker started as a session of its own (a
    service manager, `setsid`) took half of a core the API wanted, whatever its niceness
    (`benchmarks/worker_priority.py`). A session it does not lead is shared with its parent (the
    embedded workers of `serve`), where the task's niceness already counts, and its other members
    are not ours to slow.
    """
    path = Path("/proc/self/autogroup")
    if os.getsid(0) != os.getpid() or not path.exists():
        return
    # The kernel takes one autogroup change per 100 ms machine-wide and refuses others with EAGAIN
    # (two workers started together); anything else (not permitted) leaves the task's niceness.
    for _ in range(20):
        try:
            path.write_text(str(niceness))
            return
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:
            return


def start_worker_process(settings: Settings, queues: str = "training,light") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        # Quiet: the embedded worker shares the terminal with the server, so no banner and only warnings.
        [sys.executable, "-m", "app.cli", "worker", "--queues", queues, "--hostname", f"{queues}@%h", "--quiet"],
        env=child_env(settings),
        preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
    )


class EmbeddedWorkers(Supervised):
    """The embedded worker processes, watched, so queued rounds do not wait forever behind a worker
    that is gone (see `Supervised`)."""

    # Rounds in one worker; representation training and simulations in a second, so a round never
    # waits behind either. Each lowers its own priority (`worker_nice`), the second further.
    GROUPS: tuple[str, ...] = ("training,light", "background,simulations")

    def __init__(self, settings: Settings, *, check_every: float = 2.0) -> None:
        self._settings = settings
        super().__init__(self.GROUPS, what=lambda group: f"the worker for queues {group}", check_every=check_every)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        return start_worker_process(self._settings, name)

    def stop(self) -> None:
        self.stopping()
        # A round gets the usual grace to finish. A representation or simulation job would need
        # minutes: it is not waited for (its heartbeat goes quiet and a new one is asked for later);
        # the background worker only gets the seconds an idle worker needs to wind down.
        graces = {self.GROUPS[0]: 30.0, self.GROUPS[1]: 10.0}
        stop_processes([(process, graces[group]) for group, process in self.processes.items()])


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


def cmd_serve(args: argparse.Namespace) -> int:
    from app.core.migrate import upgrade
    from app.main import create_app

    if args.processes < 1:
        print("suggestlab: --processes must be at least 1", file=sys.stderr)
        return 2
    if args.processes > 1 and not port_is_free(args.host, args.port):
        print(f"suggestlab: {args.host}:{args.port} is already in use", file=sys.stderr)
        return 1
    settings = get_settings()
    if settings.auto_migrate:
        upgrade(settings)
    if args.reuse_port:
        from app.serving import serve_on_reuse_port

        serve_on_reuse_port(args.host, args.port, args.log_level)
        return 0
    workers = start_embedded_workers(settings) if settings.runs_embedded_worker and not args.no_worker else None
    if args.processes > 1:
        return serve_processes(settings, args, workers)
    run_server_with_worker(create_app(), args.host, args.port, args.log_level, workers)
    return 0


def serve_processes(settings: Settings, args: argparse.Namespace, workers: EmbeddedWorkers | None) -> int:
    from app.serving import ApiProcesses

    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    api = ApiProcesses(settings, host=args.host, port=args.port, log_level=args.log_level, processes=args.processes)
    try:
        api.wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
        if workers is not None:
            workers.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    # Before Celery forks its pool: the children inherit the niceness.
    lower_priority(worker_niceness(args.queues, get_settings().worker_nice))
    from worker.celery_app import celery_app, preload_training_stack

    preload_training_stack()

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
    serve.add_argument("--port", type=tcp_port, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="never start an embedded worker")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        help="API processes, each with its own socket on the port (SO_REUSEPORT), so the kernel spreads "
        "connections over them; compose runs 4",
    )
    serve.add_argument(
        "--reuse-port", action="store_true", help="one API process on a SO_REUSEPORT socket (what --processes starts)"
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument(
        "--queues",
        type=queue_list,
        default="training,light,background,simulations",  # argparse checks it with queue_list too
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
    demo.add_argument("--port", type=tcp_port, default=8000)
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
    from sqlalchemy.exc import OperationalError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OperationalError as exc:
        # The database is down, unreachable or refuses us: say so in one line, without the password.
        from sqlalchemy.engine import make_url

        url = make_url(get_settings().database_url).render_as_string(hide_password=True)
        reason = str(exc.orig or exc).strip().splitlines()[0]
        print(f"suggestlab {args.command}: cannot use the database at {url}: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
