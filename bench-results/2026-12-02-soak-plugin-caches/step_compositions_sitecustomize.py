"""Count distinct batching-step compositions (decoding count, prefill prompt lengths) in any ovchat process."""
import os, sys, threading, time
if os.environ.get("OVCHAT_SHAPES"):
    import builtins
    _real_import = builtins.__import__
    _done = []
    def _patch():
        from ovchat.engine import batch
        seen, steps, t0 = set(), [0], time.monotonic()
        real = batch.BatchRunner._step
        def _step(self):
            pre = tuple(sorted(len(r.ids) for r in self._active.values() if r.first_token_at is None))
            seen.add((len(self._active) - len(pre), pre))
            steps[0] += 1
            return real(self)
        batch.BatchRunner._step = _step
        def report():
            while True:
                time.sleep(30)
                print(f"SHAPES t={time.monotonic()-t0:.0f} steps={steps[0]} distinct={len(seen)}", file=sys.stderr, flush=True)
        threading.Thread(target=report, daemon=True).start()
    def _import(name, *a, **k):
        m = _real_import(name, *a, **k)
        if not _done and getattr(sys.modules.get("ovchat.engine.batch"), "BatchRunner", None):
            _done.append(1); _patch()
        return m
    builtins.__import__ = _import
