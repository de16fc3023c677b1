"""client/python/examples/train.py end to end on the 1,000-image cut: two short epochs, an
accuracy line after each.

    test_example.py TRAIN_PY
"""
import re
import subprocess
import sys

from daemon import TEST, Daemon, main, need_torch


def test_train():
    need_torch()
    with Daemon() as d:
        p = subprocess.run([sys.executable, sys.argv[2], d.endpoint, "--epochs", "2",
                            "--limit", "5", "--batch-size", "50", "--data", d.idx],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        lines = p.stdout.splitlines()
        assert lines[0].startswith("mixup batches of 50 from " + d.endpoint), lines
        pattern = r"epoch {}: 5 batches, loss \d+\.\d+, test accuracy [01]\.\d{{4}} \((\d+)/{}\)"
        for epoch, line in enumerate(lines[1:]):
            m = re.fullmatch(pattern.format(epoch, TEST), line)
            assert m and int(m[1]) <= TEST, line
        assert len(lines) == 3, lines


if __name__ == "__main__":
    main({"train": test_train})
