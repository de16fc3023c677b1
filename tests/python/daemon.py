"""What the Python client tests share: a real tmixd on an ipc:// socket in a temporary
directory, serving a 1,000-image cut of Debian's Fashion-MNIST (tests/serve/make_idx.py),
and the table of named tests each script runs one of.

Needs TMIXD, MAKE_IDX and FMNIST in the environment (and TMIX_LIBRARY, PYTHONPATH reaching
client/python for the tmix package). The scripts run as `python3 tests/python/X.py NAME`, so
this folder is sys.path[0].
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77
TRAIN, TEST = 1000, 100  # the cut's train and t10k samples


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def need_dataset():
    fmnist = os.environ.get("FMNIST", "/usr/share/datasets/fashion-mnist")
    if not os.path.isdir(fmnist):
        skip(f"{fmnist} missing (apt-get install dataset-fashion-mnist)")
    return fmnist


def need_torch():
    if importlib.util.find_spec("torch") is None:
        skip("PyTorch missing (apt-get install python3-torch)")


class Daemon:
    """tmixd serving the cut on ipc://DIR/tmixd.sock until stop() (or the with block ends).

        with Daemon("--server.seed=7") as d:
            c = tmix.Client(d.endpoint, ...)
    """

    def __init__(self, *options):
        self.options = options
        self.dir = tempfile.mkdtemp(prefix="tmix-py.")
        self.endpoint = f"ipc://{self.dir}/tmixd.sock"
        self.idx = os.path.join(self.dir, "idx")
        self.proc = self.log = None

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def _start(self):
        subprocess.run([sys.executable, os.environ["MAKE_IDX"], need_dataset(), self.idx,
                        str(TRAIN), str(TEST)], check=True)
        self.log = open(os.path.join(self.dir, "tmixd.log"), "w")
        self.proc = subprocess.Popen(
            [os.environ["TMIXD"], "serve", f"--server.endpoint={self.endpoint}",
             f"--server.state_dir={self.dir}/state", f"--dataset.path={self.idx}",
             "--server.workers=2", *self.options], stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self):
        import tmix
        for _ in range(200):
            if self.proc.poll() is not None:
                self.fail(f"tmixd exited {self.proc.returncode} at start")
            try:
                tmix.status(self.endpoint, timeout=0.2)
                return
            except tmix.TmixError:
                time.sleep(0.05)
        self.fail("tmixd does not answer")

    def fail(self, why):
        with open(os.path.join(self.dir, "tmixd.log")) as f:
            sys.exit(f"FAIL: {why}\n--- tmixd.log\n{f.read()[-3000:]}")

    def stop(self):
        """SIGTERM; tmixd must exit 0."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            rc = self.proc.wait(30)
            assert rc == 0, f"tmixd exited {rc} after SIGTERM"

    def __exit__(self, kind, *rest):
        try:
            if kind is None:
                self.stop()
        finally:
            self._cleanup()

    def _cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def exactly_once(ids, epoch):
    """ids, all of one epoch, hold every sample of the cut exactly once."""
    got = sorted(int(i) for i in ids)
    assert got == list(range(TRAIN)), \
        f"epoch {epoch}: {len(got)} ids, {len(set(got))} distinct; expected 0..{TRAIN - 1}"


def in_shm_mapping(address, nbytes, info):
    """The nbytes at address lie in the ring's mapping (info: the client's tmix.Info), and
    /proc/self/maps says that address is a read-only mapping of /dev/shm/<shm_name>."""
    assert info.shm_base <= address and address + nbytes <= info.shm_base + info.shm_bytes
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            lo, hi = (int(v, 16) for v in fields[0].split("-"))
            if lo <= address < hi:
                assert fields[-1] == "/dev/shm" + info.shm_name, line
                assert fields[1].startswith("r-") and fields[1].endswith("s"), line
                return
    raise AssertionError(f"{address:#x} is in no mapping")


def wait_for(what, check, seconds=10):
    """Polls check() until it is true; fails saying `what` did not come within seconds."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.05)


def expect_error(fn, kind, *words):
    """fn() raises kind with each of words in its message; returns the exception."""
    try:
        fn()
    except kind as e:
        for w in words:
            assert w in str(e), f"{w!r} not in {e}"
        return e
    raise AssertionError(f"no {kind.__name__}")


def main(tests):
    """Runs the test named by argv[1] from tests, a dict of name -> function."""
    if len(sys.argv) < 2 or sys.argv[1] not in tests:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(tests)}")
    tests[sys.argv[1]]()
    print(f"PASS {sys.argv[1]}")
