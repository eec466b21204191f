"""A stand-in for Ray in tests: shards run in this process, in order (tests/ is on sys.path)."""

import types


class Ref:
    """Hashable, like Ray's ObjectRef."""


class FakeRay(types.ModuleType):
    """Just enough of Ray's API to run shards in this process, in order."""

    def __init__(self):
        super().__init__("ray")
        self._up = False

    def is_initialized(self):
        return self._up

    def init(self, **kwargs):
        self._up = True

    def shutdown(self):
        self._up = False

    def put(self, value):
        return value

    def remote(self, **kwargs):
        def wrap(fn):
            class Task:
                @staticmethod
                def remote(*args):
                    ref = Ref()
                    try:
                        ref.status, ref.value = "ok", fn(*args)
                    except Exception as exc:  # noqa: BLE001 - as Ray stores it
                        ref.status, ref.value = "error", exc
                    return ref
            return Task
        return wrap

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        if ref.status == "error":
            raise ref.value
        return ref.value
