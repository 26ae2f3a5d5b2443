"""ovchat serve under tracemalloc: snapshots at the times given in $TM_AT (seconds), to $TM_OUT-<t>.snap."""
import os, sys, threading, time, tracemalloc
tracemalloc.start(12)
def snap():
    t0 = time.monotonic()
    for at in map(float, os.environ["TM_AT"].split(",")):
        time.sleep(max(at - (time.monotonic() - t0), 0))
        s = tracemalloc.take_snapshot()
        s.dump(f"{os.environ['TM_OUT']}-{int(at)}.snap")
        print(f"TM snapshot at {at:.0f}s traced={tracemalloc.get_traced_memory()[0]/2**20:.1f} MB", file=sys.stderr, flush=True)
threading.Thread(target=snap, daemon=True).start()
from ovchat.cli.main import main
sys.argv = ["ovchat", *sys.argv[1:]]
raise SystemExit(main())
