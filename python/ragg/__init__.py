"""ragg from Python: ctypes over libragg.so, no build step.

A process joins the job from the environment that ragg-run (or a launcher)
sets, exactly as ``ragg_init(NULL)`` does in C::

    import ragg
    ctx = ragg.Context()
    if ctx.role != ragg.WORKER:      # agents and parameter-server shards
        ctx.serve()
        ctx.finalize()
    ...

Workers train through :class:`ragg.optim.DistributedOptimizer` (PyTorch).
The library is found through ``RAGG_LIBRARY`` (a path to libragg.so), else
the source tree's ``build/`` directory, else the dynamic loader
(``LD_LIBRARY_PATH``, the system's directories) and ``/usr/local/lib``.
Every failure raises :class:`RaggError` with ``ragg_strerror``'s text.
"""
import ctypes
import os
import types

__all__ = ["Context", "Tensor", "RaggError", "library", "NONE", "WORKER", "AGENT", "SERVER",
           "OPT_SGD", "OPT_MOMENTUM"]

# enum ragg_role and enum ragg_optimizer of <ragg/ragg.h>.
NONE, WORKER, AGENT, SERVER = 0, 1, 2, 3
OPT_SGD, OPT_MOMENTUM = 0, 1
ROLE_NAMES = {NONE: "none", WORKER: "worker", AGENT: "agent", SERVER: "server"}
OPTIMIZER_NAMES = {OPT_SGD: "sgd", OPT_MOMENTUM: "momentum"}


class RaggError(RuntimeError):
    """A call of libragg returned a negative code.

    ``code`` is that code, ``name`` its symbolic name ("RAGG_ERR_TIMEOUT",
    "EINVAL", ...); the message is ``ragg_strerror``'s text.
    """

    def __init__(self, what, code):
        self.code = code
        self.name = _lib.ragg_strerror_name(code).decode()
        super().__init__("%s: %s (%s)" % (what, _lib.ragg_strerror(code).decode(), self.name))


class _Opts(ctypes.Structure):
    """struct ragg_opts of ragg 1.0; the library accepts this prefix of a
    later, longer structure (see ragg_ctx_opts(3))."""
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("role", ctypes.c_int),
        ("rank", ctypes.c_int),
        ("workers", ctypes.c_int),
        ("agents", ctypes.c_int),
        ("servers", ctypes.c_int),
        ("root", ctypes.c_char * 256),
        ("transport", ctypes.c_char * 32),
        ("chunk_bytes", ctypes.c_size_t),
        ("lr", ctypes.c_float),
        ("momentum", ctypes.c_float),
        ("optimizer", ctypes.c_int),
        ("timeout_ms", ctypes.c_int),
        ("poll", ctypes.c_int),
        ("spin_us", ctypes.c_int),
        ("job_key", ctypes.c_char * 128),
        ("serve_timeout_ms", ctypes.c_int),
    ]


class _Stats(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64 if n != "size" else ctypes.c_size_t)
                for n in ("size", "rounds", "bytes_sent", "bytes_received", "writes_posted",
                          "writes_landed", "frames_rejected", "peers_dropped", "wait_blocks",
                          "workers_lost", "contributions_skipped")]


def _candidates():
    env = os.environ.get("RAGG_LIBRARY")
    if env:
        return [env]
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    found = [os.path.join(top, "build", ".libs", "libragg.so.0")]
    found = [p for p in found if os.path.exists(p)]
    return found + ["libragg.so.0", "/usr/local/lib/libragg.so.0"]


def _load():
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError as e:
            tried.append(str(e))
    else:
        raise OSError("libragg.so not found (set RAGG_LIBRARY to its path): " + "; ".join(tried))

    P, I, D, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_size_t
    PP = ctypes.POINTER(ctypes.c_void_p)
    sigs = {
        "ragg_init": (I, [P, PP]),
        "ragg_finalize": (I, [P]),
        "ragg_role": (I, [P]),
        "ragg_rank": (I, [P]),
        "ragg_job_size": (I, [P, I]),
        "ragg_ctx_opts": (I, [P, ctypes.POINTER(_Opts)]),
        "ragg_transport_name": (ctypes.c_char_p, [P]),
        "ragg_tensor_declare": (I, [P, ctypes.c_char_p, P, S, PP]),
        "ragg_mem_alloc": (P, [P, S]),
        "ragg_mem_free": (I, [P, P]),
        "ragg_push": (I, [P, P, D]),
        "ragg_pull": (I, [P, P]),
        "ragg_pushpull": (I, [P, P, D, P]),
        "ragg_serve": (I, [P]),
        "ragg_stats": (I, [P, ctypes.POINTER(_Stats)]),
        "ragg_strerror": (ctypes.c_char_p, [I]),
        "ragg_strerror_name": (ctypes.c_char_p, [I]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


_lib = _load()
library = _lib._name  # the path (or name) libragg was loaded from


def _check(what, rc):
    if rc < 0:
        raise RaggError(what, rc)
    return rc


class Context:
    """One process's membership of a ragg job (ragg_init(3) with NULL
    options: every setting from the RAGG_* variables)."""

    def __init__(self):
        h = ctypes.c_void_p()
        _check("ragg_init", _lib.ragg_init(None, ctypes.byref(h)))
        self._h = h
        self._on_finalize = []

    def _handle(self):
        if self._h is None:
            raise RaggError("ragg context", -22)  # -EINVAL: finalized
        return self._h

    @property
    def role(self):
        """WORKER, AGENT or SERVER."""
        return _lib.ragg_role(self._handle())

    @property
    def role_name(self):
        return ROLE_NAMES.get(self.role, "?")

    @property
    def rank(self):
        """Rank within the role."""
        return _lib.ragg_rank(self._handle())

    @property
    def transport(self):
        return _lib.ragg_transport_name(self._handle()).decode()

    def job_size(self, role=WORKER):
        """The number of processes of ``role`` in the job (ragg_job_size(3))."""
        return _check("ragg_job_size", _lib.ragg_job_size(self._handle(), role))

    def opts(self):
        """The options this process runs with (ragg_ctx_opts(3)), as a
        namespace: lr, optimizer ("sgd", "momentum"), momentum, workers, ...
        On a worker, lr/momentum/optimizer are what the servers apply when
        every process has the same RAGG_LR/RAGG_MOMENTUM/RAGG_OPTIMIZER."""
        o = _Opts(size=ctypes.sizeof(_Opts))
        _check("ragg_ctx_opts", _lib.ragg_ctx_opts(self._handle(), ctypes.byref(o)))
        d = {}
        for name, _ in _Opts._fields_:
            v = getattr(o, name)
            d[name] = v.decode() if isinstance(v, bytes) else v
        d["role"] = ROLE_NAMES.get(o.role, "?")
        d["optimizer"] = OPTIMIZER_NAMES.get(o.optimizer, str(o.optimizer))
        del d["size"], d["job_key"]
        return types.SimpleNamespace(**d)

    def stats(self):
        s = _Stats(size=ctypes.sizeof(_Stats))
        _check("ragg_stats", _lib.ragg_stats(self._handle(), ctypes.byref(s)))
        return {n: getattr(s, n) for n, _ in _Stats._fields_ if n != "size"}

    def serve(self):
        """Agents and servers: run until the workers finalize (ragg_serve(3))."""
        _check("ragg_serve", _lib.ragg_serve(self._handle()))

    def mem_alloc(self, nbytes):
        """ragg_mem_alloc(3): the address of `nbytes` zeroed bytes that the
        shm transport shares with this worker's agent. Valid until
        mem_free() or finalize()."""
        p = _lib.ragg_mem_alloc(self._handle(), nbytes)
        if not p:
            raise RaggError("ragg_mem_alloc(%d)" % nbytes, -12)  # -ENOMEM
        return p

    def mem_free(self, address):
        _check("ragg_mem_free", _lib.ragg_mem_free(self._handle(), address))

    def declare(self, name, params_address, count):
        """ragg_tensor_declare(3) over `count` floats at `params_address`."""
        t = ctypes.c_void_p()
        _check("ragg_tensor_declare(%s)" % name,
               _lib.ragg_tensor_declare(self._handle(), name.encode(), params_address, count,
                                        ctypes.byref(t)))
        return Tensor(self, t, params_address, count)

    def finalize(self):
        """Leave the job (ragg_finalize(3)). Memory from mem_alloc() is
        released: whatever views it first gets its own copy (see
        DistributedOptimizer)."""
        if self._h is None:
            return
        for f in reversed(self._on_finalize):
            f()
        h, self._h = self._h, None
        _check("ragg_finalize", _lib.ragg_finalize(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finalize()


class Tensor:
    """A declared tensor; pushes and pulls in rounds (ragg_push(3))."""

    def __init__(self, ctx, handle, params_address, count):
        self.ctx, self._h, self.params_address, self.count = ctx, handle, params_address, count

    def pushpull(self, grad_address, weight, params_address=None):
        """Push `count` floats at `grad_address` with `weight` (the sample
        count), then wait for the round's parameters."""
        if params_address is None:
            params_address = self.params_address
        _check("ragg_pushpull", _lib.ragg_pushpull(self._h, grad_address, float(weight),
                                                   params_address))
