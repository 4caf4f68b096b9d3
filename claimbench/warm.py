"""A warm start for the many small train jobs of a local DAG: one server process imports torch, timm and
every plugin once, then forks a child per `claimbench train` request, so a job pays for a fork instead of
Python start-up, the imports and plugin discovery (about 3-4 CPU-seconds a run on this machine).

The job is still one Snakemake job per run: its shell command is the client (`python -m claimbench.warm
SOCKET train ...`, standard library only), which hands its stdout/stderr to the child, waits, and exits
with the child's code. Killing the client kills the child (the server watches the connection), so
kill-and-resume behaves as for a plain job. No server listening (a cluster node, a dry run, a crashed
server): the client becomes the plain `python -m claimbench train ...` command. The child runs exactly the
code a plain job runs (`claimbench.cli.main`) in the job's working directory and environment, so it
gives the same numbers. The server loads the code once: edit the code, restart the DAG.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys

MAX_REQUEST = 1 << 20


def _preload() -> None:
    """What every train job imports, once, in the server (nothing that starts threads or touches a GPU)."""
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (the optimizers import it on their first step: ~1 s)

    from claimbench import cli, registry, train  # noqa: F401

    registry.discover()
    try:
        import timm  # noqa: F401
    except ImportError:
        pass


def _child(inherited: list[socket.socket], fds: list[int], req: dict) -> None:
    """In the forked child: become the job (its fds, directory, environment) and run the CLI."""
    code = 1
    try:
        for s in inherited:  # the server's sockets are not the job's
            s.close()
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = ["claimbench", *req["argv"]]
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from claimbench.cli import main

        code = int(main(req["argv"]) or 0)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001  (the child must always exit, never return into the server loop)
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(path: str) -> None:
    """Accept requests on a Unix socket until SIGTERM; one forked child per request."""
    _preload()
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    running: dict[socket.socket, int] = {}  # client connection -> child pid
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            ready, _, _ = select.select([srv, *running], [], [], 0.2)
            for s in ready:
                if s is srv:
                    _accept(srv, running)
                else:  # the client went away (killed job): kill its child
                    os.kill(running[s], signal.SIGKILL)
            _reap(running)
    finally:
        for pid in running.values():
            os.kill(pid, signal.SIGKILL)
        srv.close()
        if os.path.exists(path):
            os.unlink(path)


def _accept(srv: socket.socket, running: dict) -> None:
    conn, _ = srv.accept()
    try:
        msg, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 2)
        req = json.loads(msg)
        if len(fds) != 2:
            raise ValueError("expected stdout and stderr")
    except (OSError, ValueError):
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        _child([srv, conn, *running], fds, req)
    for fd in fds:
        os.close(fd)
    running[conn] = pid


def _reap(running: dict) -> None:
    for conn, pid in list(running.items()):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            try:
                conn.sendall(struct.pack("!i", code))
            except OSError:
                pass
            conn.close()
            del running[conn]


def request(path: str, argv: list[str]) -> int | None:
    """Run `claimbench <argv>` in the server's child; its exit code, or None when no server answers."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        return None
    with conn:
        req = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        socket.send_fds(conn, [req], [sys.stdout.fileno(), sys.stderr.fileno()])
        data = b""
        while len(data) < 4:
            chunk = conn.recv(4 - len(data))
            if not chunk:
                return 1  # the server died under the job
            data += chunk
        return struct.unpack("!i", data)[0]


def main(args: list[str]) -> int:
    """`python -m claimbench.warm serve SOCKET` or `python -m claimbench.warm SOCKET train ...`."""
    if len(args) >= 2 and args[0] == "serve":
        serve(args[1])
        return 0
    if len(args) < 2:
        print("usage: python -m claimbench.warm serve SOCKET | SOCKET <claimbench args>", file=sys.stderr)
        return 2
    code = request(args[0], args[1:])
    if code is None:  # no server: the plain command
        os.execv(sys.executable, [sys.executable, "-m", "claimbench", *args[1:]])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

