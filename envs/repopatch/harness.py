"""The grading harness: pytest from the image, results in a report signed with a per-run key.

Never imported by rowgym: ``grading.py`` passes this file's *source* to the sandbox as
``python3 -I -c <source> <config file>``, with the working directory outside the
repository, so nothing of it lives in the repository tree. All of it runs in a thread of its own
(:func:`_start`: the main thread, the only one Python runs signal handlers in, never runs Python again).
Order of events:

1. Read the config file (JSON: a per-run key, the repository root, its extra path dirs,
   the pytest arguments, the files the agent changed) and delete it.
2. Import pytest, pluggy and everything this harness needs while ``sys.path`` holds only
   the standard library and site-packages (``-I``: no ``PYTHONPATH``, no cwd, no user
   site; ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`` is set by the caller).
3. Fingerprint what grades: the functions and classes of ``_pytest``/``pluggy``/``pytest``,
   ``builtins``, key functions of ``os``/``sys``/``unittest``, the modules in
   ``sys.modules``, ``sys.meta_path``; install an audit hook (it cannot be removed).
   Read the graded test files and compile them here, as pytest's assertion rewriter does, into
   marked code whose returns are the evidence that a passed test ran to its end; pytest's
   rewriter is answered with that code. Every test pytest later collects from one of them must
   run it (code the repository compiled under the test file's name, or a test module it put in
   ``sys.modules`` in place of the real one, is reported as tampering).
4. Write the signed ``started`` record, append the repository (and its path dirs) to
   ``sys.path`` *after* site-packages, chdir into it, run ``pytest.main`` with a reporter
   plugin that keeps per-test outcomes.
5. Re-check the fingerprints, the registered hook implementations and the audit
   findings, then write the signed ``finished`` record (outcomes + tamper findings) and
   leave with ``os._exit`` (saved before any repository code ran), so no ``atexit``
   handler of the code under test runs after the report.

Records go to a duplicate of fd 2 taken at start, one line each:
``@@rowgym-harness <kind> <hmac-sha256 hex> <base64 JSON>``. The key never appears in
an argv or the environment, nor in any frame: it lives only in the audit hook's closure
(``make_hook``), which writes ``started`` and ``finished`` when this function raises the
``rowgym.harness.record`` event, and each finding the moment it happens (``tamper``: the hook's, and
the reporter's, raised as ``rowgym.harness.finding``). The outcomes in ``finished`` are the hook's
own, merged from ``rowgym.harness.outcome`` events the reporter raises as pytest reports each phase
(a status other than a failure counts only from pytest's runner: ``from_runner`` in ``make_hook``).
The operands of the graded tests' assert comparisons are probed for values that lie about comparing
(``probe_value``). The code under test runs in this process, so it could still dig the key out
of memory (the GC, ctypes: both reported at once): that is the documented limit.
"""

import sys


def _main(argv):  # noqa: C901 - one linear procedure, read top to bottom
    import abc as abc_module
    import ast
    import base64
    import importlib.util
    import json
    import operator
    import os
    import threading
    import types
    import warnings

    sys.dont_write_bytecode = True  # -I ignores PYTHONDONTWRITEBYTECODE; no bytecode in the work dir
    exit_now = os._exit
    write = os.write
    conf_path = argv[0]

    def read_nofollow(path):
        """The bytes of ``path``, never through a symlink (raises OSError)."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            data = b""
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return data
                data += chunk
        finally:
            os.close(fd)

    try:
        raw = read_nofollow(conf_path)
    finally:
        os.unlink(conf_path)
    conf = json.loads(raw)
    del raw
    out_fd = os.dup(2)
    try:  # the interpreter's built-in SHA-256: hashlib would load OpenSSL (~3 ms) for two records
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
    b64encode, dumps = base64.b64encode, json.dumps  # bound now: the repository can replace module attributes
    frame_at = sys._getframe

    def make_hook(key_hex, detect, own_codes, image_prefixes, runner_codes, pluggy_prefix, merge, agent_file):
        """The audit hook, and the only holder of the key's HMAC state and of the tests' outcomes (see ``hook``).
        ``own_codes``: the ids of the harness's code objects; ``image_prefixes``: where the image's code lives (see
        ``foreign_inside``); ``runner_codes``, ``pluggy_prefix``: see ``from_runner``; ``merge``: folds a phase's
        status into the outcomes; ``agent_file``: whether a file name is one the agent wrote."""
        key = bytes.fromhex(key_hex).ljust(64, b"\0")  # HMAC (RFC 2104) with a 32-byte key
        inner, outer = sha256(bytes(b ^ 0x36 for b in key)), sha256(bytes(b ^ 0x5C for b in key))
        del key
        main_code = frame_at(1).f_code  # _main's: the one frame whose records are written
        main_frame = []
        in_hook = [False]
        in_nested = [False]
        hook_code = []  # the hook's own code
        outcomes = {}  # node id -> status, merged from the reporter's outcome events: what `finished` carries

        def past_pluggy(f):
            while f is not None and f.f_code.co_filename.startswith(pluggy_prefix):
                f = f.f_back
            return f

        def from_runner(f):
            """Whether ``f``, the frame that raised an outcome, is the reporter's, called by pytest's runner for the
            item its test loop is on, on the stack of the harness's own ``pytest.main`` with no code the agent wrote
            under it: ``logreport <- pluggy <- call_and_report <- runtestprotocol <- pytest_runtest_protocol <-
            pluggy <- pytest_runtestloop <- ... <- _main``. The reporter's method, called by the code under test
            (directly, from a thread, or from a finalizer that makes a report of its own), is not."""
            logreport, call_and_report, runtestprotocol, protocol, loop = runner_codes
            if f is None or f.f_code is not logreport:
                return False
            f = past_pluggy(f.f_back)
            if f is None or f.f_code is not call_and_report:
                return False
            item = f.f_locals.get("item")
            f = f.f_back
            if f is None or f.f_code is not runtestprotocol:
                return False
            f = f.f_back
            if f is None or f.f_code is not protocol:
                return False
            f = past_pluggy(f.f_back)
            if f is None or f.f_code is not loop or f.f_locals.get("item") is not item:
                return False
            for _ in range(100):
                f = f.f_back
                if f is None or agent_file(f.f_code.co_filename):
                    return False
                if main_frame and f is main_frame[0]:
                    return True
            return False

        def foreign_inside():
            """Whether code that is neither the harness's nor the image's runs inside the hook, between this nested
            event and the hook's outer frame: the hook looks at objects of the code under test (a class's
            ``__module__``, an ``isinstance``), which can run that code, and a ``sys._getframe`` from there would
            otherwise be taken for the hook's own (the hook answers no event while it runs) and hand out its frame."""
            f = frame_at(2)  # what made the nested audited call (this -> hook -> it)
            for _ in range(64):
                if f is None:
                    return True
                code = f.f_code
                if hook_code and code is hook_code[0]:
                    return False
                if id(code) not in own_codes and not code.co_filename.startswith(image_prefixes):
                    return True
                f = f.f_back
            return True

        def emit(kind, payload):
            body = b64encode(dumps(payload, sort_keys=True).encode()).decode()
            mac, out = inner.copy(), outer.copy()
            mac.update(f"{kind}:{body}".encode())
            out.update(mac.digest())
            line = f"\n@@rowgym-harness {kind} {out.hexdigest()} {body}\n".encode()
            while line:
                line = line[write(out_fd, line):]

        def hook(event, args):
            """Records reach the host only through here: ``_main`` raises ``rowgym.harness.record`` events,
            accepted from its own frame alone (the first ``started`` names it; a second ``_main`` run by
            the code under test has another), and what ``detect`` finds is written at once. Neither the key
            nor ``emit`` is in any frame or in anything the code under test can name without the GC; so a
            frame it gets without an audited call (a signal handler's) leads to neither."""
            if in_hook[0]:  # what this hook calls (sys._getframe) raises events too
                if in_nested[0]:
                    return
                in_nested[0] = True
                try:
                    if foreign_inside():
                        emit("tamper", {"note": f"audit: reach into the harness: {event} from code run inside the "
                                                f"audit hook"})
                except Exception:
                    pass
                finally:
                    in_nested[0] = False
                return
            in_hook[0] = True
            try:
                if event == "rowgym.harness.outcome":
                    node, when, status = args
                    if type(node) is not str or type(when) is not str or status is not None and type(status) is not str:
                        return
                    # a failure may come from anywhere (it only lowers the reward); anything else only from pytest
                    if status not in ("failed", "error") and not from_runner(frame_at(1)):
                        emit("tamper", {"note": f"audit: reach into the harness: the outcome of {node[:200]} reported "
                                                f"from outside pytest's runner"})
                        return
                    merge(outcomes, node, when, status)
                    return
                if event == "rowgym.harness.finding":  # anyone may report one: it only lowers the reward
                    emit("tamper", {"note": str(args[0])[:500] if args else "a finding"})
                    return
                if event == "rowgym.harness.record":
                    caller = frame_at(1)
                    kind, payload = args
                    if caller.f_code is not main_code or (main_frame and caller is not main_frame[0]) or (
                            not main_frame and kind != "started") or kind not in ("started", "finished"):
                        note = f"audit: reach into the harness: a {kind!r} record raised by code that is not the " \
                               f"harness's"
                        emit("tamper", {"note": note})
                        return
                    if kind == "started":
                        if main_frame:
                            return
                        main_frame.append(caller)
                    if kind == "finished":
                        if payload.get("outcomes") != outcomes:
                            payload["tamper"] = list(payload.get("tamper") or []) + [
                                "the reporter's outcomes differ from the ones pytest reported as the tests ran"]
                        payload["outcomes"] = dict(outcomes)
                    emit(kind, payload)
                    if kind == "finished":
                        main_frame.append(None)  # one finished record, then nothing is accepted
                    return
                note = detect(event, args)
                if note is not None:
                    emit("tamper", {"note": note})  # now: the end-of-run record may never come, or be forged
            except Exception:
                pass
            finally:
                in_hook[0] = False

        hook_code.append(hook.__code__)
        return hook

    root = conf["root"]
    agent_files = {os.path.normpath(os.path.join(root, p)) for p in conf.get("agent_files", [])}

    import unittest.case  # noqa: F401 - fingerprinted (unittest-style tests)

    import _pytest.assertion.rewrite
    import _pytest.config
    import _pytest.main
    import _pytest.nodes
    import _pytest.python
    import _pytest.reports
    import _pytest.runner
    import pluggy
    import pytest

    # pytest imports most of its plugins lazily while configuring; import them now, from the image.
    for name in getattr(_pytest.config, "default_plugins", ()) + ("_pytest.pytester", "_pytest.legacypath"):
        try:
            __import__(name if "." in name else "_pytest." + name)
        except Exception:
            pass

    def in_repo(path):
        try:
            p = os.path.realpath(path)
        except (TypeError, ValueError):
            return False
        return p == root or p.startswith(root + os.sep)

    watched_mods = ("ast", "builtins", "os", "posix", "sys", "io", "atexit", "importlib", "unittest.case",
                    "unittest.result", "unittest.suite", "unittest.runner", "unittest.main")

    def watched_modules():
        for name, mod in list(sys.modules.items()):
            if not isinstance(mod, types.ModuleType):
                continue
            if name in watched_mods or name.split(".")[0] in ("_pytest", "pytest", "pluggy"):
                yield name, mod

    code_types = (types.FunctionType, types.MethodType, classmethod, staticmethod, property)
    watched_types = code_types + (types.BuiltinFunctionType, types.MethodDescriptorType,
                                  types.WrapperDescriptorType, type)
    graded_roots = ("_pytest", "pytest", "pluggy", "unittest")
    missing = object()
    code_of = operator.attrgetter("__code__")

    def members(obj, label, snap, classes):
        """Record ``obj``'s functions, classes, descriptors (all of ``builtins``) and their code objects."""
        groups, fns, classes_out = snap[1], snap[2], classes
        d = vars(obj)
        keys = list(d) if label == "builtins" else [k for k, v in d.items() if isinstance(v, watched_types)]
        if not keys:
            return
        get = operator.itemgetter(*keys, keys[0])  # always a tuple (one key would give a bare value)
        vals = get(d)
        groups.append((label, obj, keys, get, vals))
        own = getattr(obj, "__name__", "") if classes_out is not None else None
        for k, v in zip(keys, vals, strict=False):  # vals ends with keys[0] again
            if isinstance(v, code_types):
                fn = v.fget if isinstance(v, property) else getattr(v, "__func__", v)
                if getattr(fn, "__code__", None) is not None:
                    fns.append((f"{label}.{k}", fn))
            elif own is not None and isinstance(v, type) and v.__module__ == own:
                classes_out.append((f"{label}.{k}", v))

    def fingerprint():
        """What grades, by identity: taken once before the repository runs, re-checked by :func:`changed`."""
        snap = ({}, [], [], None, [])
        classes = []
        for name, mod in watched_modules():
            snap[0][name] = mod
            members(mod, name, snap, classes if name.split(".")[0] in graded_roots else None)
        for label, cls in classes:
            members(cls, label, snap, None)
            snap[4].append((label, cls, frozenset(vars(cls))))
        members(Reporter, "harness.Reporter", snap, None)
        return snap[:3] + (list(map(code_of, (fn for _, fn in snap[2]))), snap[4])

    benign_attrs = {"_pytest_diamond_inheritance_warning_shown"}  # pytest >= 8 sets it lazily

    def changed(before):
        """Everything of ``before`` that is no longer the same object (C-level compares, details on a miss)."""
        mods0, groups, fns, codes0, keysets = before
        bad = [f"sys.modules[{n!r}] replaced" for n, m in mods0.items() if sys.modules.get(n, missing) is not m]
        for label, obj, keys, get, vals0 in groups:
            d = vars(obj)
            try:
                if not any(map(operator.is_not, vals0, get(d))):
                    continue
            except KeyError:
                pass
            bad += [f"{label}.{k} changed" for k, v in zip(keys, vals0, strict=False) if d.get(k, missing) is not v]
        if any(map(operator.is_not, codes0, map(code_of, (fn for _, fn in fns)))):
            bad += [f"{label}.__code__ changed" for (label, fn), c in zip(fns, codes0, strict=True) if fn.__code__ is not c]
        for label, cls, keys0 in keysets:
            now = vars(cls).keys()
            if now != keys0:
                diff = sorted(keys0.symmetric_difference(now) - benign_attrs)[:5]
                if diff:
                    bad.append(f"{label}: attributes added or removed: {diff}")
        return bad

    findings = []

    def found(note):
        """A finding, signed and written at once (the list is reachable from the reporter, so it could be emptied
        before the end-of-run record is written)."""
        findings.append(note)
        record("rowgym.harness.finding", note)
    audit_seen = set()
    repo_running = [False]
    guarded_prefixes = ("_pytest", "pytest", "pluggy", "unittest", "builtins")

    image_files = ("/usr/", "/lib/")  # where the image's Python, pytest and their plugins live
    image_code = image_files + (os.path.dirname(os.__file__) + os.sep,)  # and the stdlib (a venv's, on a host)

    agent_file_of = {}  # a code object's file name -> whether the agent wrote it (asked for every frame event)
    # Bound before any repository code runs: the harness's globals are ``__main__``'s, which that code can
    # rebind (``sys = None`` made every lookup in the audit hook raise, and the hook see nothing).
    normpath, get_ident = os.path.normpath, threading.get_ident
    main_thread_id = get_ident()
    # What the hook decides by is its own: nothing reachable from the reporter (which pytest's plugin manager
    # holds, and which repository code can find without an audited call) closes over these names, so no cell
    # of theirs can be rebound from there (an emptied agent_files would make the agent's code look like the
    # image's). Only a frame reaches them, and taking one is what the hook reports.
    hook_agent_files = frozenset(agent_files)
    hook_exempt_codes = []  # the harness's own code that calls sys._getframe while tests run (its mark)

    def agent_on_stack():
        if get_ident() != main_thread_id:
            return True  # pytest runs tests on the main thread: a reach from a worker thread is the agent's doing
        f = frame_at(2)
        for _ in range(300):
            if f is None:
                return False
            name = f.f_code.co_filename
            hit = agent_file_of.get(name)
            if hit is None:
                hit = agent_file_of[name] = normpath(name) in hook_agent_files
            if hit:
                return True
            f = f.f_back
        return True

    def compiled_from(path, source):
        """Whether ``source`` (what ``compile`` was given) is the file at ``path`` as it is (an import)."""
        if isinstance(source, str):
            source = source.encode()
        if not isinstance(source, (bytes, bytearray)):
            return False  # an AST: made, not read
        try:
            with open(path, "rb") as f:
                return f.read() == source
        except OSError:
            return False

    # Ways into the harness's own frames and objects (its emit function holds the key's HMAC state): the
    # frame of a call, a traceback's or generator's frame, the GC's object lists, another audit hook (which
    # is handed frames), ctypes. Code the agent wrote has no need of them to fix a bug; when it uses one,
    # the finding is signed and written at once, before that call returns, so a record the code under test
    # forges afterwards (and an os._exit that skips the end of the run) cannot hide it.
    reach_events = ("sys._getframe", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
                    "gc.get_referents", "sys.addaudithook")
    code_events = ("marshal.loads", "marshal.load")  # code whose file name was set to anything (an allowed one)
    frame_attrs = ("tb_frame", "gi_frame", "cr_frame", "ag_frame")
    # the standard library's own callers of sys._getframe that keep the frame to themselves (a module name for
    # namedtuple or a TypeVar, a warning's or a log record's location): their files, and below their code objects
    stdlib_dir = os.path.dirname(os.__file__) + os.sep
    keeps_frame_files = tuple(stdlib_dir + f for f in ("collections/__init__.py", "typing.py", "enum.py",
                                                       "warnings.py", "logging/__init__.py", "dataclasses.py",
                                                       "functools.py", "abc.py", "string.py", "doctest.py"))

    def code_objects(mod):
        """Every code object of a module's functions and classes (methods, nested defs), by identity."""
        out, todo = set(), [v for v in vars(mod).values()]
        while todo:
            v = todo.pop()
            code = getattr(getattr(v, "__func__", v), "__code__", None)
            if isinstance(code, types.CodeType) and id(code) not in out:
                out.add(id(code))
                todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
            elif isinstance(v, types.CodeType) and id(v) not in out:
                out.add(id(v))
                todo += [c for c in v.co_consts if isinstance(c, types.CodeType)]
            elif isinstance(v, type) and getattr(v, "__module__", None) == mod.__name__:
                todo += list(vars(v).values())
        return out

    # by the identity of their code, as a file name can be claimed by code made from bytes (the modules are
    # imported now, from the image)
    import collections  # noqa: E401
    import dataclasses
    import doctest
    import enum
    import functools
    import logging
    import string
    import typing
    keeps_frame = frozenset().union(*(code_objects(m) for m in (collections, typing, enum, warnings, logging,
                                                                 dataclasses, functools, abc_module, string, doctest)))
    def detect(event, args):
        """A new finding of ``event`` (None: none, or seen before); called by the audit hook."""
        if not repo_running[0]:
            return None
        try:
            note = audit_note(event, args)
        except Exception as e:  # fail closed: a hook made to fail on a way in sees nothing otherwise
            note = None
            if event in reach_events or event in code_events or event.startswith("ctypes.") or (
                    event == "object.__getattr__" and len(args) > 1 and args[1] in frame_attrs):
                note = f"audit: reach into the harness: the audit hook failed on {event} ({type(e).__name__})"
        if note is None or note in audit_seen:
            return None
        audit_seen.add(note)
        findings.append(note)
        return note

    def audit_note(event, args):
        if event in code_events:
            if not agent_on_stack():
                return None
            return f"audit: reach into the harness: {event} (code from bytes, any file name) while code the agent " \
                   f"wrote runs"
        if event in reach_events or event.startswith("ctypes.") or (
                event == "object.__getattr__" and len(args) > 1 and args[1] in frame_attrs):
            if not agent_on_stack():
                return None
            caller = frame_at(3)  # what called the audited function (hook -> detect -> this)
            if caller.f_code in hook_exempt_codes or (
                    event == "sys._getframe" and id(caller.f_code) in keeps_frame
                    and caller.f_code.co_filename.startswith(keeps_frame_files)):
                return None  # the harness's own mark, or the stdlib keeping a frame to itself (by code identity)
            what = f"{event} {args[1]}" if event == "object.__getattr__" else event
            return f"audit: reach into the harness: {what} from {caller.f_code.co_filename} while code the agent " \
                   f"wrote runs"
        if event in ("sys.settrace", "sys.setprofile"):
            # a trace function can jump over a test's lines or rewrite frames: only the image's own
            # code (doctest, pdb) may set one while tests run
            caller = frame_at(3)  # the caller of sys.settrace (hook -> detect -> this)
            if caller.f_code.co_filename.startswith(image_code):
                return
            if event == "sys.setprofile" and not agent_on_stack():
                return
            note = f"audit: {event} called from {caller.f_code.co_filename}, not by the harness"
        elif event in ("object.__setattr__", "object.__delattr__"):
            obj, name = args[0], args[1]
            setter = frame_at(3).f_code  # types.coroutine (asyncio) sets __code__: image code may
            if name == "__code__" and setter is not give_marked_code.__code__ and not \
                    setter.co_filename.startswith(image_code):
                note = f"audit: __code__ of {getattr(obj, '__qualname__', '?')} replaced"
            elif name != "__code__" and isinstance(obj, type) and (
                    obj.__module__ or "").split(".")[0] in guarded_prefixes:
                note = f"audit: {obj.__module__}.{obj.__qualname__}.{name} set or deleted"
            else:
                return
        elif event in ("compile", "code.__new__"):
            # Code disguised (by its file name) as the image's, a graded test's or a repository file's
            # that it was not compiled from, made while code the agent wrote runs.
            filename = str(args[1]) if len(args) > 1 else ""
            if not filename.startswith("/") or not agent_on_stack():
                return  # "<string>" and the like claim no file
            what = "compiled" if event == "compile" else "made"
            real = os.path.realpath(filename)
            if filename.startswith(image_files):
                note = f"audit: code {what} as {filename} by code the agent wrote"
            elif real in test_codes:
                note = f"audit: code {what} as the test file {filename} by code the agent wrote"
            elif in_repo(real) and normpath(filename) not in hook_agent_files and not (
                    event == "compile" and compiled_from(real, args[0])):
                note = f"audit: code {what} as {filename}, not from that file, by code the agent wrote"
            else:
                return
        else:
            return None
        return note

    def merge_outcome(outcomes, node, when, status):
        """Fold one phase's status (None: the phase passed) into ``outcomes[node]``: a failure or error sticks,
        a teardown that passed leaves the call's status (or makes it ``passed`` when there is none)."""
        prev = outcomes.get(node)
        if status is None:
            status = prev or ("passed" if when == "teardown" else None)
            if status is None:
                return
        if prev in ("error", "failed") and status not in ("error", "failed"):
            return
        if prev == "passed" and when == "teardown" and status == "passed":
            return
        outcomes[node] = status

    class Reporter:
        def __init__(self):
            self.outcomes = {}
            self.collect_errors = []
            self.hooks0 = None
            self.plugins0 = None
            self.items = {}
            self.session_exit = None
            self.checked = False
            self.must_run = {}  # nodeid -> the test file's code object its call phase must run to the end
            self.ran = set()

        def _hooks(self, pm):
            out = {"pm._inner_hookexec": getattr(pm, "_inner_hookexec", None),
                   "pm._hookexec": getattr(type(pm), "_hookexec", None)}
            for name, hc in list(vars(pm.hook).items()):
                if name.startswith("__"):
                    continue
                out[f"{name}._hookexec"] = getattr(hc, "_hookexec", None)
                for impl in hc.get_hookimpls():
                    fn = impl.function
                    out[(name, id(impl))] = (impl, fn, getattr(fn, "__code__", None), impl.hookwrapper,
                                             getattr(impl, "wrapper", None))
            return out

        def _allowed_plugin(self, plugin):
            f = getattr(plugin, "__file__", None)
            if isinstance(plugin, types.ModuleType):
                return f is not None and (not in_repo(f) or os.path.basename(f) == "conftest.py")
            mod = sys.modules.get(type(plugin).__module__)
            return mod is not None and not in_repo(getattr(mod, "__file__", None) or root)

        @pytest.hookimpl(tryfirst=True)
        def pytest_collection(self, session):
            pm = session.config.pluginmanager
            self.hooks0 = self._hooks(pm)
            self.plugins0 = set(map(id, pm.get_plugins()))
            self._keep = list(pm.get_plugins())

        def pytest_collectreport(self, report):
            if report.failed:
                self.collect_errors.append(report.nodeid)

        @pytest.hookimpl(trylast=True)
        def pytest_collection_finish(self, session):
            for note in check_test_code(session.items):  # first: it gives the tests their marked code
                found(note)
            for item in session.items:
                obj = getattr(item, "obj", None)
                code = getattr(obj, "__code__", None) or getattr(getattr(obj, "__func__", None), "__code__", None)
                self.items[item.nodeid] = (item, obj, code)
                if code is not None and os.path.normpath(code.co_filename) in agent_files:
                    found(f"test {item.nodeid} runs code from a file the agent wrote")
                mod = getattr(getattr(item, "module", None), "__loader__", None)
                ok = (mod is None or isinstance(mod, _pytest.assertion.rewrite.AssertionRewritingHook)
                      or type(mod).__module__ in ("_frozen_importlib_external", "importlib._bootstrap_external"))
                if not ok:
                    found(f"test module of {item.nodeid} loaded by {type(mod).__module__}."
                                    f"{type(mod).__qualname__}")

        @pytest.hookimpl(hookwrapper=True, tryfirst=True)
        def pytest_runtest_call(self, item):
            completed.clear()
            try:
                yield
            finally:
                code = self.must_run.get(item.nodeid)
                if code is not None and id(code) in completed:
                    self.ran.add(item.nodeid)

        def pytest_runtest_logreport(self, report):
            node, when = report.nodeid, report.when
            xfail = hasattr(report, "wasxfail")
            if when == "call" and type(report).__name__ == "SubtestReport":  # pytest >= 9, before the test's own
                if report.failed:
                    merge_outcome(self.outcomes, node, when, "failed")
                    record("rowgym.harness.outcome", node, when, "failed")
                return
            if when == "call":
                status = ("xpass" if xfail else "passed") if report.passed else \
                         "failed" if report.failed else ("xfail" if xfail else "skipped")
                if status == "passed" and node in self.must_run and node not in self.ran:
                    found(f"test {node} was reported passed but its code did not run to the end")
                    status = "unverified"
            elif report.failed:
                status = "error"
            elif report.skipped and when == "setup":
                status = "xfail" if xfail else "skipped"
            else:
                status = None  # a phase that passed: the test's outcome stays (a teardown with none: passed)
            merge_outcome(self.outcomes, node, when, status)
            # the outcomes the finished record carries are the hook's, merged from these events as they come:
            # this dict is reachable from pytest's plugin manager, and a thread of the code under test rewrote it
            record("rowgym.harness.outcome", node, when, status)

        @pytest.hookimpl(trylast=True)
        def pytest_sessionfinish(self, session, exitstatus):
            self.session_exit = int(exitstatus)
            self.check(session.config.pluginmanager)

        def check(self, pm):
            self.checked = True
            if self.hooks0 is None:
                return
            now = self._hooks(pm)
            for k, v in self.hooks0.items():
                w = now.get(k)
                same = w is v if not isinstance(v, tuple) else (
                    w is not None and all(a is b for a, b in zip(v, w, strict=True)))
                if not same:
                    found(f"hook implementation {k if isinstance(k, str) else k[0]} changed or removed")
            for k, v in now.items():
                if k not in self.hooks0 and isinstance(v, tuple) and not self._allowed_plugin(v[0].plugin):
                    found(f"hook implementation {k[0]} added by {type(v[0].plugin).__qualname__}")
            for p in pm.get_plugins():
                if id(p) not in self.plugins0 and not self._allowed_plugin(p):
                    found(f"plugin registered from the repository: {type(p).__qualname__}")
            for node, (item, obj, code) in self.items.items():
                o = getattr(item, "obj", None)
                c = getattr(o, "__code__", None) or getattr(getattr(o, "__func__", None), "__code__", None)
                # a unittest item binds its method to a new TestCase at setup (pytest >= 8): same function
                if getattr(o, "__func__", o) is not getattr(obj, "__func__", obj) or c is not code:
                    found(f"test function of {node} replaced")

    def written_by_agent(obj):
        """True when ``obj`` (a finder, a hook) or its class has code from a file the agent wrote."""
        cls = obj if isinstance(obj, type) else type(obj)
        codes = [getattr(obj, "__code__", None)]
        for klass in cls.__mro__:
            for v in vars(klass).values():
                fn = getattr(v, "__func__", v)
                codes.append(getattr(fn, "__code__", None))
        return any(c is not None and os.path.normpath(c.co_filename) in agent_files for c in codes)

    def test_file_sources():
        """realpath -> bytes of the graded test files (dirs: their ``.py`` files), read before any repository code runs
        (only to compile them: :func:`compile_variant`)."""
        out = {}
        paths = []
        for rel in conf.get("test_files", []):
            p = os.path.realpath(os.path.join(root, rel))
            if os.path.isdir(p):
                paths += [os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs if f.endswith(".py")]
            else:
                paths.append(p)
        for p in paths:
            try:
                out[p] = read_nofollow(p)
            except OSError:
                continue
        return out

    class PassHookIni:  # the one ini value pytest's rewriter reads, for the variant with the assertion pass hook
        def getini(self, name):
            if name != "enable_assertion_pass_hook":
                raise ValueError(name)
            return True

    # Evidence that a test ran, from outside pytest's hooks (which the code under test can reach): each
    # collected test function runs a marked twin of the test file's code (pytest imports it, see
    # :func:`rewrite_test`), the same code with every return (and the end of the body) passing its value
    # through `completion_mark`, a constant of that code and no name in any namespace. A passed report counts
    # only if the test's marked code reached one of those returns during its call phase: an exception
    # propagating never does, and neither does a hook proxy, a plugin or a wrapper that answers for the test
    # without running it. No trace function: only the image may set one while tests run.
    MARK = "\0rowgym-completion-mark\0"  # the placeholder constant the marked code calls; replaced by the mark
    MARK_COL = 1 << 20  # the column of a mark call's own instructions: no real source line is that long
    completed = set()  # id(marked code) that reached a return in the current call phase
    mark_sites = set()  # (id(marked code), f_lasti) while a frame of it calls the mark
    mark_owners = set()  # (id(marked code), id(globals)) of the collected test functions given that code
    has_positions = hasattr(types.CodeType, "co_positions")  # Python >= 3.11
    getframe = sys._getframe

    def completion_mark(value=None):
        try:
            # the caller must be marked code at a mark call (not code that got hold of the mark), run as the
            # test function pytest collected runs it: with its module's globals (not a copy made to pass)
            f = getframe(1)
            if ((id(f.f_code), f.f_lasti if has_positions else -1) in mark_sites
                    and (id(f.f_code), id(f.f_globals)) in mark_owners):
                completed.add(id(f.f_code))
        except Exception:
            pass
        return value

    hook_exempt_codes.append(completion_mark.__code__)

    # Values that lie about comparing: ``add`` returning an object whose ``__eq__`` always answers True passes
    # ``assert add(1, 2) == 3`` (and every other ``==`` assert) with the bug unfixed. Every operand of a comparison
    # in a graded test's asserts goes through ``probe_value`` first: a value that is not plain data (exact
    # builtin scalars and containers, looked into) is compared with values it cannot have been meant to equal
    # (random numbers and text, an object of a class made here), a random number of them in a random order, so
    # that a liar cannot count its way past them either. A genuine ``__eq__`` says no to all of them; one that
    # says yes (or a ``!=`` / ``in`` / ordering that does the like) is a signed finding at once.
    PROBE = "\0rowgym-probe\0"  # the placeholder constant the asserts' operands are passed through
    plain_scalars = frozenset({int, float, complex, str, bytes, bool, type(None)})
    plain_containers = frozenset({list, tuple, dict, set, frozenset})
    rand_bytes = os.urandom

    class Unmet:  # what no value under test was ever meant to equal
        __slots__ = ()

    def near(y):
        """Values close to ``y`` (the other operand, when plain) and different from it: a liar cannot tell them
        from ``y`` without knowing ``y``, which is what the assert checks (a look at the probes' size or kind no
        longer tells them apart)."""
        t = type(y)
        if y is None or t is bool:
            return [not y, 0 if y is None else None]
        if t is int:
            return [y + 1, y - 1, -y - 7]
        if t is float:
            return [y + 1.5, -y - 7.25] if y == y and abs(y) < 1e300 else []
        if t in (str, bytes):
            extra = "\u2060r" if t is str else b"\0r"
            return [y + extra, y[:-1] if y else extra]
        if t in (list, tuple):
            return [y + t((Unmet(),)), y[:-1] if y else t((0,))]
        if t is dict:
            return [{**y, "\0rowgym": 1}, {} if y else {"r": 1}]
        if t in (set, frozenset):
            return [y | {"\0rowgym"}, t() if y else t({0})]
        return []

    no_hint = Unmet()

    def probes(hint):
        """(value, near) pairs: values near ``hint`` (the other operand, when plain data), one each of every plain
        kind, objects of a class made here (so a liar that says yes to one kind only is still asked), a random
        number of them, shuffled."""
        r = int.from_bytes(rand_bytes(8), "little")
        pool = [(v, True) for v in (near(hint) if hint is not no_hint else [])]
        pool += [(v, False) for v in (Unmet(), (1 << 80) + r, float((1 << 60) + r), f"rowgym{r:x}",
                                      ((1 << 80) + r,), [f"{r:x}"], {f"{r:x}": r})]
        pool += [(Unmet(), False) for _ in range(rand_bytes(1)[0] % 4)]
        return sorted(pool, key=lambda _: rand_bytes(2))

    op_eq, op_lt, op_gt = operator.eq, operator.lt, operator.gt  # bound before any repository code runs

    def op_ne(a, b):  # a lie says "not different"
        return not (a != b)

    def op_in(a, b):
        return b in a

    def lies(v, hint):
        """How ``v`` (not plain data) answers probes it should refuse, or None."""
        contains = hasattr(type(v), "__contains__")
        for other, is_near in probes(hint if type(hint) in plain_scalars or type(hint) in plain_containers
                                     else no_hint):
            # an order only against the made object: a str or int subclass may rightly be < a number; and `in`
            # not for values near the other operand (a part of a string is in it)
            made = type(other) is Unmet
            for op, ask in (("==", op_eq), ("!=", op_ne), ("in", op_in if contains and not is_near else None),
                            ("<", op_lt if made else None), (">", op_gt if made else None)):
                if ask is None:
                    continue
                try:
                    if ask(v, other):
                        return f"{op} {type(other).__name__}"
                except Exception:
                    continue
        return None

    def probe_value(value, hint=no_hint):
        """``value``, after its non-plain parts (at most 100,000 looked at) answered the probes; ``hint``: the
        operand it is compared with (pytest's rewritten asserts; the parts inside containers get no hint)."""
        try:
            todo, budget = [value], 100_000
            while todo and budget > 0:
                v = todo.pop()
                budget -= 1
                cls = type(v)
                if cls in plain_scalars:
                    continue
                if cls in plain_containers:
                    todo += list(v.items()) if cls is dict else v
                    continue
                lie = lies(v, hint if v is value else no_hint)
                if lie is not None:
                    record("rowgym.harness.finding", f"a value compared in a graded test's assert (a {cls.__module__}."
                                                      f"{cls.__qualname__}) holds {lie} for a value it was never meant "
                                                      f"to match")
                    break
        except Exception:
            pass
        return value

    hook_exempt_codes.append(probe_value.__code__)

    def guard_compares(tree, rewritten):
        """Pass every operand of the asserts' comparisons through :func:`probe_value`: in pytest's rewritten code,
        the comparisons of its ``@py_assert`` temporaries (its explanations use the temporaries, so they read as
        before); in a plain import, the comparisons inside ``assert`` statements."""
        def wrap(node, hint=None):
            args = [node] if hint is None else [node, ast.copy_location(ast.Name(hint.id, ast.Load()), node)]
            return ast.copy_location(ast.Call(func=ast.copy_location(ast.Constant(PROBE), node), args=args,
                                              keywords=[]), node)

        def temp(n):
            return isinstance(n, ast.Name) and n.id.startswith("@py_assert")

        roots = [tree] if rewritten else [n.test for n in ast.walk(tree) if isinstance(n, ast.Assert)]
        for root in roots:
            for node in ast.walk(root):
                if isinstance(node, ast.Compare) and (not rewritten or (
                        temp(node.left) and all(temp(c) for c in node.comparators))):
                    ops = [node.left, *node.comparators]
                    # the rewriter's temporaries can be read twice: each operand is probed near its neighbour's value
                    hints = [ops[i + 1] if i + 1 < len(ops) else ops[i - 1] for i in range(len(ops))] if rewritten \
                        else [None] * len(ops)
                    node.left = wrap(ops[0], hints[0])
                    node.comparators = [wrap(c, h) for c, h in zip(ops[1:], hints[1:], strict=True)]

    def mark_return(node, field="value"):
        """``return X`` -> ``return MARK(X)`` (``lambda: X`` -> ``lambda: MARK(X)`` with ``field="body"``); every
        location set by hand (``ast.fix_missing_locations`` would also touch the assertion rewriter's nodes)."""
        at = {"lineno": node.lineno, "end_lineno": node.lineno, "col_offset": MARK_COL, "end_col_offset": MARK_COL}
        setattr(node, field, ast.Call(func=ast.Constant(MARK, **at), args=[getattr(node, field) or ast.Constant(
            None, **at)], keywords=[], **at))

    def mark_function(fn):
        mark_returns(fn.body)
        last = fn.body[-1].end_lineno or fn.body[-1].lineno
        end = ast.Return(value=None, lineno=last, end_lineno=last, col_offset=0, end_col_offset=0)
        mark_return(end)
        fn.body.append(end)

    def mark_returns(stmts):
        """Marks the returns among ``stmts`` and the statements they hold (only statements hold returns or
        defs, so expressions are never walked); a nested def is marked as its own function."""
        for st in stmts:
            if isinstance(st, ast.Return):
                mark_return(st)
            elif isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
                mark_function(st)
            elif isinstance(st, (ast.Assign, ast.AnnAssign)) and isinstance(st.value, ast.Lambda):
                mark_return(st.value, "body")  # test_x = lambda: ...
            else:
                for field in ("body", "orelse", "finalbody"):
                    sub = getattr(st, field, None)
                    if isinstance(sub, list):
                        mark_returns(sub)
                for part in (getattr(st, "handlers", None) or []) + (getattr(st, "cases", None) or []):
                    mark_returns(part.body)

    marked = {}  # id -> marked code, kept alive so the ids in mark_sites, mark_owners and completed stay theirs

    def with_mark(code):
        """``code`` with the placeholder constant replaced by :func:`completion_mark`, its call sites recorded."""
        consts = tuple(completion_mark if type(c) is str and c == MARK else probe_value if type(c) is str and c == PROBE
                       else with_mark(c)
                       if isinstance(c, types.CodeType) else c for c in code.co_consts)
        out = code.replace(co_consts=consts)
        if completion_mark in consts:
            marked[id(out)] = out
            if has_positions:
                mark_sites.update((id(out), 2 * i) for i, pos in enumerate(out.co_positions()) if pos[2] == MARK_COL)
            else:
                mark_sites.add((id(out), -1))
        return out

    def nested_codes(code):
        return [c for c in code.co_consts if isinstance(c, types.CodeType)]

    test_sources = test_file_sources()  # realpath -> bytes, read before any repository code runs
    test_codes = {p: {} for p in test_sources}  # realpath -> qualname -> [(reference code or None, marked twin or None)]
    variants = {}  # (realpath, variant) -> its marked top-level code (None: not compiled or not markable)
    hashed_pyc = "source_hash" in _pytest.assertion.rewrite._rewrite_test.__code__.co_names  # pytest >= 8.1

    def compile_variant(path, variant):
        """Compile the graded test file at ``path`` from its bytes read at start: ``rewritten`` as pytest's
        assertion rewriter does, ``pass_hook`` the same with its assertion pass hook, ``plain`` as a normal
        import does. Records (reference, marked twin) pairs by qualname and returns the marked top-level
        code. ``rewritten`` needs no reference: pytest runs this code itself (:func:`rewrite_test`)."""
        key = (path, variant)
        if key in variants:
            return variants[key]
        variants[key] = None
        source = test_sources[path]
        try:
            tree = ast.parse(source, filename=path)
            if variant != "plain":
                _pytest.assertion.rewrite.rewrite_asserts(
                    tree, source, path, PassHookIni() if variant == "pass_hook" else None)
            top = None if variant == "rewritten" else compile(
                source if variant == "plain" else tree, path, "exec", dont_inherit=True)
        except Exception:
            return None
        try:
            guard_compares(tree, variant != "plain")
            mark_returns(tree.body)  # the same tree, compiled already
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "'str' object is not callable": the placeholder, replaced below
                twin = with_mark(compile(tree, path, "exec", dont_inherit=True))
        except Exception:  # a harness limit, not the agent's doing; these tests are then never verified
            twin = None
        stack = [(top, twin)] if top is not None or twin is not None else []
        while stack:
            ref, ref_twin = stack.pop()
            refs = nested_codes(ref) if ref is not None else None
            twins = nested_codes(ref_twin) if ref_twin is not None else None
            n = len(refs if refs is not None else twins)
            pairs = list(zip(refs or [None] * n, twins or [None] * n, strict=True))
            for c, t in pairs:
                test_codes[path].setdefault((c or t).co_qualname, []).append((c, t))
            stack += pairs
        variants[key] = twin
        return twin

    for p in test_sources:
        compile_variant(p, "rewritten")
    pytest_rewrite_test = _pytest.assertion.rewrite._rewrite_test

    def rewrite_test(fn, config):
        """pytest's ``_rewrite_test`` (the compile step of its assertion rewriter) for a graded test file: the
        harness's marked code, compiled from the bytes read before any repository code ran. pytest would
        compile the same code again; now it compiles nothing, so the evidence costs no extra compile."""
        path = os.path.realpath(str(fn))
        if path in test_sources:
            hook = bool(config.getini("enable_assertion_pass_hook")) if config is not None else False
            twin = compile_variant(path, "pass_hook" if hook else "rewritten")
            if twin is not None:  # the first value is only for writing a pyc, which the harness never does
                first = importlib.util.source_hash(test_sources[path]) if hashed_pyc else os.stat(path)
                return first, twin
        return pytest_rewrite_test(fn, config)

    _pytest.assertion.rewrite._rewrite_test = rewrite_test  # before the fingerprint, which then guards it

    def genuine_code(fn, wanted, strict):
        """``(function, (code, marked twin))`` for the function that calling ``fn`` would run whose code is one of
        ``wanted`` (the test file's code for that name), or None: ``fn`` itself, or a function a wrapper (a
        decorator's) holds through ``__wrapped__`` and closure cells, four layers at most. ``strict``: a wrapper's
        code must come from a real file (the test file, the repository, the image), never from a string
        compiled at run time. Holding the test is not running it: its marked twin checks that it ran to the end."""
        todo, seen = [(fn, 0)], set()
        while todo:
            f, depth = todo.pop()
            if isinstance(f, types.MethodType):
                f = f.__func__
            if not isinstance(f, types.FunctionType) or id(f) in seen or depth > 4:
                continue
            seen.add(id(f))
            code = f.__code__
            for pair in wanted:
                if (pair[1] is not None and code is pair[1]) or (pair[0] is not None and code == pair[0]):
                    return f, pair
            if strict and not (os.path.isabs(code.co_filename) and os.path.isfile(code.co_filename)):
                continue
            inner = [vars(f).get("__wrapped__")]
            for cell in f.__closure__ or ():
                try:
                    inner.append(cell.cell_contents)
                except ValueError:
                    pass
            todo += [(g, depth + 1) for g in inner if g is not None]
        return None

    def give_marked_code(fn, twin):
        if fn.__code__ is not twin:
            fn.__code__ = twin  # the audit hook lets only this function do it
        mark_owners.add((id(twin), id(fn.__globals__)))  # module dicts live as long as their modules

    def find(path, qualname, fn, strict):
        """(known, found): whether the graded test file defines ``qualname``, and :func:`genuine_code` of ``fn``
        for it among the variants compiled so far, then the plain one (a file imported without the rewriter)."""
        while True:
            wanted = test_codes[path].get(qualname)
            # a test whose node id does not name its code (an inherited method, a factory's function, a
            # lambda) may run any of the file's code
            pool = wanted or [pair for pairs in test_codes[path].values() for pair in pairs]
            found = genuine_code(fn, pool, strict) if pool else None
            if found is not None or (path, "plain") in variants:
                return wanted is not None, found
            compile_variant(path, "plain")

    def check_test_code(items):
        """Findings for collected tests (and the functions of their modules) that do not run the graded
        test files' own code."""
        out, modules = [], {}
        for item in items:
            try:
                path = os.path.realpath(str(getattr(item, "path", None) or item.fspath))
            except Exception:
                continue
            if path not in test_codes:
                continue
            names = item.nodeid.split("::")[1:]
            if not names:
                continue
            names[-1] = getattr(item, "originalname", None) or names[-1].split("[", 1)[0]
            known, found = find(path, ".".join(names), getattr(item, "obj", None), True)
            if found is not None:
                fn, (_, twin) = found
                if twin is not None:
                    give_marked_code(fn, twin)
                if twin is None or id(twin) in marked:  # None (no marked code could be made): never verified;
                    reporter.must_run[item.nodeid] = twin  # a lambda has no return statement to mark
            elif known:
                out.append(f"test {item.nodeid} does not run the test file's code for it")
            mod = getattr(item, "module", None)
            if isinstance(mod, types.ModuleType):
                modules[id(mod)] = (mod, path)
        for mod, path in modules.values():
            ns = vars(mod)
            for qualname in list(test_codes[path]):
                owner, _, name = qualname.rpartition(".")
                if "<" in qualname or "." in owner:
                    continue
                obj = ns.get(owner) if owner else ns
                if owner and not isinstance(obj, type):
                    continue
                fn = vars(obj).get(name) if owner else obj.get(name)
                fn = getattr(fn, "__func__", fn) if isinstance(fn, (classmethod, staticmethod)) else fn
                if isinstance(fn, types.FunctionType) and find(path, qualname, fn, False)[1] is None:
                    out.append(f"{qualname} of {os.path.relpath(path, root)} is not the test file's code")
        return out

    reporter = Reporter()
    # Repository code can reach the reporter without an audited call (pytest's plugin manager is kept in class
    # attributes, e.g. the debugging plugin's): its attributes and its class must be the ones it started with
    # (its containers: the scalars it sets itself as the session goes)
    reporter_attrs0 = {k: v for k, v in vars(reporter).items() if type(v) in (dict, set, list)}
    reporter_class0 = dict(vars(Reporter))
    meta0 = list(sys.meta_path)
    hooks_path0 = list(sys.path_hooks)
    before = fingerprint()
    record = sys.audit  # bound now, like everything the harness calls after repository code ran
    own_codes, todo = set(), [frame_at(0).f_code]  # _main's code and every code object it holds, by identity
    while todo:
        c = todo.pop()
        own_codes.add(id(c))
        todo += [k for k in c.co_consts if isinstance(k, types.CodeType)]
    runner_codes = (Reporter.pytest_runtest_logreport.__code__, _pytest.runner.call_and_report.__code__,
                    _pytest.runner.runtestprotocol.__code__, _pytest.runner.pytest_runtest_protocol.__code__,
                    _pytest.main.pytest_runtestloop.__code__)
    sys.addaudithook(make_hook(conf.pop("key"), detect, frozenset(own_codes), image_code, runner_codes,
                               os.path.dirname(pluggy.__file__) + os.sep, merge_outcome,
                               lambda name: normpath(name) in hook_agent_files))  # the key lives on only in the hook's closure
    record("rowgym.harness.record", "started", {"pytest": pytest.__version__,
                                                "pluggy": getattr(pluggy, "__version__", "?")})

    for d in conf.get("paths", []):
        if d not in sys.path:
            sys.path.append(d)
    os.chdir(root)
    repo_running[0] = True
    error = None
    try:
        code = pytest.main(list(conf["args"]), plugins=[reporter])
    except BaseException as e:  # SystemExit from the code under test, KeyboardInterrupt, ...
        code, error = -1, f"{type(e).__name__}: {e}"[:500]
    repo_running[0] = False
    if not reporter.checked:
        findings.append("pytest session did not finish normally")
    problems = changed(before)
    # Libraries add import finders too (toolz's `tlz`); one whose code the agent wrote is suspect.
    new_finders = [type(f).__qualname__ for f in sys.meta_path if f not in meta0 and written_by_agent(f)]
    if new_finders:
        problems.append(f"import finders added to sys.meta_path by code the agent wrote: {new_finders}")
    if [h for h in sys.path_hooks if h not in hooks_path0 and written_by_agent(h)]:
        problems.append("sys.path_hooks changed by code the agent wrote")
    if sys.gettrace() is not None or sys.getprofile() is not None:
        problems.append("a trace or profile function is still installed")
    swapped = sorted(k for k, v in reporter_attrs0.items() if vars(reporter).get(k) is not v or type(v) is not type(
        vars(reporter).get(k))) + sorted(k for k, v in reporter_class0.items() if vars(Reporter).get(k) is not v)
    if swapped or type(reporter.outcomes) is not dict or set(vars(Reporter)) != set(reporter_class0):
        problems.append(f"the harness's reporter was changed by the code under test: {swapped[:5]}")
    record("rowgym.harness.record", "finished", {"exit": int(code) if isinstance(code, int) else -1, "error": error,
                      "session_exit": reporter.session_exit, "outcomes": reporter.outcomes,
                      "collect_errors": reporter.collect_errors[:50],
                      "tamper": (findings + problems)[:50]})
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    exit_now(0)


def _start(argv):
    """Run :func:`_main` in a thread of its own while the main thread waits on a lock, never to run Python again.

    Python runs signal handlers in the main thread only, and hands each the frame it interrupted; installing one
    (``signal.signal``) and arming a timer (``signal.setitimer``) are not audited. A handler installed by the code
    under test caught the audit hook's own frame within a second, and with it the function that signs (reward 1.0,
    the bug unfixed). Here the tests run in the harness's thread, where ``signal.signal`` refuses, and the main
    thread has nothing to hand out: it blocks in C on a lock no one releases (``SIGINT`` back to its default, so
    ``_thread.interrupt_main`` finds no Python handler to run and does nothing) until ``_main`` ends the process
    with ``os._exit``."""
    import _thread
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _thread.stack_size(64 << 20)  # deep recursion in a test: at least what the main thread had
    never = _thread.allocate_lock()
    never.acquire()

    def run():
        try:
            _main(argv)  # leaves with os._exit(0)
        except BaseException:
            import traceback

            traceback.print_exc()
        os._exit(1)

    _thread.start_new_thread(run, ())
    while True:
        never.acquire()


if __name__ == "__main__":
    _start(sys.argv[1:])
