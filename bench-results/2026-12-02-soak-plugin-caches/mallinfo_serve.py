"""ovchat serve, logging glibc mallinfo2 every 15 s: in-use vs free-in-arena vs mmapped."""
import ctypes, sys, threading, time
libc = ctypes.CDLL("libc.so.6")
class MI2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MI2
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
def log():
    t0 = time.monotonic()
    while True:
        m = libc.mallinfo2()
        print(f"MI t={time.monotonic()-t0:.0f} rss={rss():.1f} arena={m.arena/2**20:.1f} inuse={m.uordblks/2**20:.2f} "
              f"free={m.fordblks/2**20:.2f} mmap={m.hblkhd/2**20:.1f} nmmap={m.hblks} ordblks={m.ordblks}",
              file=sys.stderr, flush=True)
        time.sleep(15)
threading.Thread(target=log, daemon=True).start()
from ovchat.cli.main import main
sys.argv = ["ovchat", *sys.argv[1:]]
raise SystemExit(main())
