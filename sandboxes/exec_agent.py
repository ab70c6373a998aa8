"""PID 1 of every Docker sandbox: runs the host's commands, reaps orphans, and nothing else.

Not imported by rowgym: its source is the container's command (``python3 -c SOURCE``), so
nothing on the work dir, which the agent in the box controls, is ever run as PID 1.

The control channel is this process's own stdin and stdout, which only the host reaches
(``docker attach``). Requests are JSON lines ``{"id", "argv", "cwd", "env", "timeout",
"max_output"}``; each reply is one JSON line ``{"id", "code", "timed_out", "duration",
"out", "err"}`` with each stream as ``[head_b64, tail_b64, total_bytes]`` (the middle past
``max_output`` bytes dropped, as :class:`rowgym.sandboxes.base.OutputBuffer` does).

Why the box cannot tamper with it or speak on it: this process makes itself non-dumpable
before anything runs, so ``/proc/1/fd``, ``/proc/1/mem`` and ptrace of PID 1 are denied to
uid 1000 (the box has no capabilities); every command gets fresh pipes and ``/dev/null`` as
stdin, with every other descriptor closed before ``exec``, so no command holds the channel;
and signals from inside the box cannot stop PID 1 (only SIGCHLD has a handler, to wake up).

Limits, per command: its own session and process group (``setsid``), killed as a group with
SIGKILL at its deadline. The reply goes out when the command has exited and its pipes are
drained: at EOF, or ``LINGER_S`` after the exit when a background process still holds them
(as ``docker exec`` returns when its process exits); the host then kills what is left, frozen. Exit codes: the command's, or
128 + the signal that killed it (137 for SIGKILL, as ``timeout -s KILL`` reports it).
"""

import base64
import ctypes
import json
import os
import select
import signal
import sys
import time

LINGER_S = 0.05


class Job:
    """One running command: its pid (= its process group), pipes, kept output and deadline."""

    def __init__(self, req, pid, fds):
        limit = int(req.get("max_output", 65536))
        self.id, self.pid, self.fds, self.status, self.timed_out = req["id"], pid, set(fds), None, False
        self.linger = None  # once exited: when to stop waiting for the pipes
        self.t0 = time.monotonic()
        self.deadline = self.t0 + float(req["timeout"])
        self.head, self.tail = limit // 2, limit - limit // 2
        self.order = fds
        self.out = {fd: [bytearray(), bytearray(), 0] for fd in fds}

    def feed(self, fd, chunk):
        buf = self.out[fd]
        buf[2] += len(chunk)
        room = self.head - len(buf[0])
        if room > 0:
            buf[0] += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            buf[1] += chunk
            if len(buf[1]) > self.tail:
                del buf[1][: len(buf[1]) - self.tail]


class Agent:
    def __init__(self):
        self.jobs, self.by_fd, self.inbuf = {}, {}, bytearray()
        self.null = os.open("/dev/null", os.O_RDWR)
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)

    def reply(self, msg):
        data = (json.dumps(msg) + "\n").encode()
        while data:
            data = data[os.write(1, data):]

    def start(self, req):
        try:
            o_r, o_w = os.pipe()
            e_r, e_w = os.pipe()
            pid = os.fork()
        except OSError as e:  # the pids limit is exhausted, say
            msg = f"rowgym sandbox: could not start the command: {e}\n".encode()
            self.reply({"id": req["id"], "code": 126, "timed_out": False, "duration": 0.0,
                        "out": ["", "", 0], "err": [base64.b64encode(msg).decode(), "", len(msg)]})
            return
        if pid == 0:
            self.child(req, o_w, e_w)
        os.close(o_w)
        os.close(e_w)
        job = Job(req, pid, (o_r, e_r))
        self.jobs[pid] = job
        for fd in (o_r, e_r):
            os.set_blocking(fd, False)
            self.by_fd[fd] = job

    def child(self, req, o_w, e_w):
        code = 126
        try:
            os.setsid()
            os.dup2(self.null, 0)
            os.dup2(o_w, 1)
            os.dup2(e_w, 2)
            os.closerange(3, 1 << 16)
            for sig in (signal.SIGPIPE, signal.SIGCHLD, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            os.chdir(req["cwd"])
            env = dict(os.environ)
            env.update(req["env"])
            code = 127
            os.execvpe(req["argv"][0], req["argv"], env)
        except OSError as e:
            code = 127 if isinstance(e, FileNotFoundError) and code == 127 else 126
            os.write(2, f"rowgym sandbox: {req['argv'][0]}: {e.strerror}\n".encode())
        finally:
            os._exit(code)

    def close_fd(self, job, fd):
        os.close(fd)
        job.fds.discard(fd)
        self.by_fd.pop(fd, None)

    def finish(self, job):
        del self.jobs[job.pid]
        for fd in list(job.fds):
            self.close_fd(job, fd)
        st = job.status
        code = os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)

        def enc(b):
            return [base64.b64encode(bytes(b[0])).decode(), base64.b64encode(bytes(b[1])).decode(), b[2]]

        self.reply({"id": job.id, "code": code, "timed_out": job.timed_out,
                    "duration": round(time.monotonic() - job.t0, 4),
                    "out": enc(job.out[job.order[0]]), "err": enc(job.out[job.order[1]])})

    def expire(self, now):
        for job in list(self.jobs.values()):
            if job.linger is not None and now >= job.linger:
                for fd in list(job.fds):
                    self.close_fd(job, fd)
            if not job.timed_out and now >= job.deadline:
                job.timed_out = True
                try:
                    os.killpg(job.pid, signal.SIGKILL)
                except OSError:
                    pass
                for fd in list(job.fds):  # an escaped holder keeps the pipes open: stop waiting
                    self.close_fd(job, fd)

    def read_requests(self):
        chunk = os.read(0, 1 << 16)
        if not chunk:
            sys.exit(0)
        self.inbuf += chunk
        while b"\n" in self.inbuf:
            line, _, rest = bytes(self.inbuf).partition(b"\n")
            self.inbuf = bytearray(rest)
            self.start(json.loads(line))

    def reap(self):
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.jobs:
                job = self.jobs[pid]
                job.status, job.linger = st, time.monotonic() + LINGER_S

    def run(self):
        while True:
            now = time.monotonic()
            self.expire(now)
            waits = [j.deadline - now for j in self.jobs.values() if not j.timed_out]
            waits += [j.linger - now for j in self.jobs.values() if j.linger is not None]
            try:
                ready, _, _ = select.select([0, self.wake_r, *self.by_fd], [], [],
                                            max(0.0, min(waits)) if waits else None)
            except InterruptedError:
                ready = []
            for fd in ready:
                if fd == 0:
                    self.read_requests()
                elif fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                elif fd in self.by_fd:
                    job = self.by_fd[fd]
                    try:
                        chunk = os.read(fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    if chunk:
                        job.feed(fd, chunk)
                    else:
                        self.close_fd(job, fd)
            self.reap()
            for job in list(self.jobs.values()):
                if job.status is not None and not job.fds:
                    self.finish(job)


def main():
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0: /proc/1/* root-owned, no ptrace
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # PID 1 ignores a signal left at its default
    agent = Agent()
    signal.set_wakeup_fd(agent.wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    agent.run()


if __name__ == "__main__":
    main()
