"""Attack payloads against the harness's completion marks (tests/envs/repopatch/test_grader_harness.py), as a
red-team pass wrote them (two share the swallowing ``runtest``). Each goes into ``pkg/__init__.py`` of a
repository whose ``add`` is still wrong; each got a failing test reported ``passed`` with no tamper finding
before its fix."""

FAKE_GLOBALS = r'''
def _attack():
    import sys, types
    class U:
        def __eq__(s, o): return True
        def __ne__(s, o): return True
        def __bool__(s): return True
        def __call__(s, *a, **k): return s
        def __getattr__(s, n):
            if n.startswith("__") and n.endswith("__"): raise AttributeError(n)
            return s
        def __getitem__(s, k): return s
        def __iter__(s): return iter(())
        def __enter__(s): return s
        def __exit__(s, *a): return True
        def __contains__(s, x): return True
        def __hash__(s): return 0
        def __repr__(s): return "U"
    for op in ("add sub mul truediv floordiv mod pow and or xor lt le gt ge radd rsub rmul".split()):
        setattr(U, f"__{op}__", (lambda s, *a: s) if op not in ("lt","le","gt","ge") else (lambda s, o: True))
    class D(dict):
        def __missing__(s, k): return U()
    def fake_run(item):
        fn = item.obj
        f = getattr(fn, "__func__", fn)
        code = f.__code__
        g = D({"__builtins__": D()})
        nf = types.FunctionType(code, g, f.__name__, None, f.__closure__)
        try:
            nf(*[U()] * code.co_argcount)
        except BaseException:
            pass
    patched = set()
    def patch(session):
        for item in getattr(session, "items", ()) or ():
            if id(item) in patched: continue
            patched.add(id(item))
            item.runtest = (lambda it: lambda: fake_run(it))(item)
    f = sys._getframe(1)
    while f is not None:
        for v in list(f.f_locals.values()):
            s = getattr(v, "session", None)
            if type(s).__name__ == "Session" and "gethookproxy" not in vars(s):
                real = s.gethookproxy
                def ghp(fspath, real=real, s=s):
                    patch(s)
                    return real(fspath)
                s.gethookproxy = ghp
                return
        f = f.f_back
_attack()
'''
"""Runs the test's own marked code, but as a new function over a dict whose every missing name is an object
that equals anything: every assert holds, and the code reaches a marked return."""

SWALLOW_FAILURES = r'''
exec(compile(r"""
import sys
patched = set()
def patch(s):
    for item in getattr(s, "items", ()) or ():
        if id(item) in patched: continue
        patched.add(id(item))
        def rt(run=item.runtest):
            try: run()
            except Exception: pass
        item.runtest = rt
f = sys._getframe(1)
while f is not None:
    for v in list(f.f_locals.values()):
        s = getattr(v, "session", None)
        if type(s).__name__ == "Session" and "gethookproxy" not in vars(s):
            real = s.gethookproxy
            def ghp(fspath, real=real, s=s):
                patch(s)
                return real(fspath)
            s.gethookproxy = ghp
            f = None
            break
    f = f and f.f_back
""", "<string>", "exec"), {"__name__": "x"})
'''
"""Sets a ``runtest`` that swallows the failure on every item; aimed at tests whose node id does not name
their code (below), which once went without evidence, and part of the next payload."""

PLAIN_IMPORT_AND_NO_TWIN = r'''
exec(compile(r"""
import sys, warnings, importlib.util, types, collections.abc
real_cw = warnings.catch_warnings
def cw(*a, **k):
    if sys._getframe(1).f_code.co_name == "compile_variant":
        raise RuntimeError("nope")
    return real_cw(*a, **k)
warnings.catch_warnings = cw
class Hook(collections.abc.Sequence):
    def __init__(self, g): self.g = g
    def __len__(self): return 0
    def __getitem__(self, i): raise IndexError(i)
    def __iter__(self):
        g = self.g
        del g["pytest_plugins"]
        hooks = [h for h in sys.meta_path if type(h).__name__ == "AssertionRewritingHook"]
        for h in hooks: sys.meta_path.remove(h)
        spec = importlib.util.spec_from_file_location(g["__name__"] + "_plain", g["__file__"])
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        for h in hooks: sys.meta_path.insert(0, h)
        for k, v in vars(m).items():
            if isinstance(v, (types.FunctionType, type)) and k in g:
                g[k] = v
        return iter(())
f = sys._getframe(1)
while f is not None:
    g = f.f_globals
    if f.f_code.co_name == "<module>" and "/tests/" in (g.get("__file__") or ""):
        g["pytest_plugins"] = Hook(g)
        break
    f = f.f_back
""", "<string>", "exec"), {"__name__": "x"})
''' + SWALLOW_FAILURES
"""Imports the real test file without pytest's rewriter (so the harness compiles its plain variant late) and
makes that compile fail, hoping the tests then go without evidence; ``runtest`` swallows the failures."""

NOT_NAMED_BY_NODE_ID = r'''
from pkg import add
class TestBase:
    def test_inherited(self):
        assert add(1, 2) == 3
class TestChild(TestBase):
    pass
def _mk():
    def t():
        assert add(1, 2) == 3
    return t
test_factory = _mk()
test_lambda = lambda: add(1, 2) == 3 or 1 / 0
def _direct():
    assert add(1, 2) == 3
'''
"""Tests whose node id is not their code's qualname: an inherited method, a factory's function, a lambda."""
