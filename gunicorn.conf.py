"""gunicorn settings for both services (gunicorn reads ./gunicorn.conf.py by itself).

Start each service with ``--name web`` or ``--name worker``; the name labels its logs.
"""

import os

# Deadlines are raised by SIGALRM, which only reaches a process's main thread:
# the worker's sync processes handle one request at a time, in their main thread.
# web passes --threads (gthread) on its command line: its long-polls and event
# streams wait in threads, so they do not hold up submits.
worker_class = "sync"
threads = 1
# The app writes one access line per request (with httpRequest) itself.
accesslog = None
logger_class = "offload.gunicorn_logger.Logger"
# Each worker process builds its own app, store engine and gRPC channel after the fork.
preload_app = False
forwarded_allow_ips = "127.0.0.1"
# Bounds on what a client may send before the app sees it (answered 400/431 by gunicorn):
# request line, number of header fields, size of one header field.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
# gunicorn 25+ opens a control socket at $XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl by
# default: one path for every gunicorn of the user, so the services of two stacks (web
# and worker, tests, make run) would fight over it. Nothing here uses gunicornc.
control_socket_disable = True


def on_starting(server):  # type: ignore[no-untyped-def]
    """Tell the worker app gunicorn's real timeout, which its start-up check compares."""
    if server.cfg.proc_name == "worker":
        if server.cfg.worker_class_str != "sync" or server.cfg.threads != 1:
            raise SystemExit("the worker must run sync gunicorn workers (deadlines use SIGALRM)")
        os.environ["OFFLOAD_WORKER_TIMEOUT_SECONDS"] = str(server.cfg.timeout)
    if server.cfg.proc_name == "web":
        # web keeps a share of its threads free of waiters (long-polls, event streams).
        os.environ["OFFLOAD_WEB_THREADS"] = str(server.cfg.threads)


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """In the worker: on SIGTERM (an instance stopping), running jobs hand over early."""
    if worker.cfg.proc_name == "worker":
        from offload import draining

        draining.install()
