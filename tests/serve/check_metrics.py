"""check_metrics.py TMIXCTL ENDPOINT PORT: the metrics endpoint of the tmixd serving ENDPOINT
with [server] metrics_port = PORT, against real trainers (tmixctl pull): the text parses as
Prometheus exposition format 0.0.4 (every sample in a family with HELP and TYPE), every
documented family is there, the counters move by exactly what the trainers took, the
histograms are cumulative and count every batch, a trainer holding a batch shows up, other
paths and methods are refused, and the port is bound to 127.0.0.1 only."""
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

tmixctl, endpoint, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = f"http://127.0.0.1:{port}/metrics"

FAMILIES = {
    "tmix_info": "gauge", "tmix_uptime_seconds": "gauge", "tmix_dataset_samples": "gauge",
    "tmix_trainers": "gauge", "tmix_decode_errors_total": "counter",
    "tmix_producer_jobs": "gauge", "tmix_batch_longest_running_seconds": "gauge",
    "tmix_stall_timeout_seconds": "gauge", "tmix_batch_memory_bytes": "gauge",
    "tmix_batch_memory_limit_bytes": "gauge", "tmix_batches_served_total": "counter",
    "tmix_images_served_total": "counter", "tmix_group_members": "gauge",
    "tmix_group_epoch": "gauge", "tmix_group_epoch_progress": "gauge",
    "tmix_group_batches_ready": "gauge", "tmix_group_batches_producing": "gauge",
    "tmix_group_shm_slots": "gauge", "tmix_group_shm_slots_used": "gauge",
    "tmix_group_cuda_slots": "gauge", "tmix_group_cuda_slots_used": "gauge",
    "tmix_batch_queued_seconds": "histogram", "tmix_batch_read_seconds": "histogram",
    "tmix_batch_mix_seconds": "histogram", "tmix_next_seconds": "histogram",
}
SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def fail(message):
    sys.exit(f"FAIL metrics: {message}")


def scrape():
    with urllib.request.urlopen(url, timeout=5) as r:
        if not r.headers["Content-Type"].startswith("text/plain; version=0.0.4"):
            fail(f"Content-Type {r.headers['Content-Type']}")
        body = r.read().decode()
    types, helps, samples = {}, set(), {}
    for line in body.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            if not m:
                fail(f"not a sample line: {line!r}")
            name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            if family not in types or family not in helps:
                fail(f"{name} has no HELP or TYPE")
            samples[name + labels] = value
    missing = [f for f, kind in FAMILIES.items() if types.get(f) != kind]
    if missing:
        fail(f"families missing or of another type: {missing}")
    return samples


def pull(group, mode, batches, *extra):
    subprocess.run([tmixctl, "pull", "-e", endpoint, "--group", group, "--mode", mode,
                    "--batches", str(batches), "--batch-size", "50", "--print-ids", *extra],
                   check=True, stdout=subprocess.DEVNULL)


def histogram_ok(s, name, at_least):
    bounds = [k for k in s if k.startswith(name + "_bucket")]
    counts = [s[k] for k in bounds]
    if counts != sorted(counts) or s[name + '_bucket{le="+Inf"}'] != s[name + "_count"]:
        fail(f"{name}: buckets not cumulative, or +Inf != count: {counts}")
    if s[name + "_count"] < at_least or s[name + "_sum"] <= 0:
        fail(f"{name}: count {s[name + '_count']} < {at_least} or sum {s[name + '_sum']}")


before = scrape()
if before["tmix_trainers"] != 0 or before["tmix_dataset_samples"] != 1000:
    fail(f"at start: trainers {before['tmix_trainers']}, samples {before['tmix_dataset_samples']}")
pull("g1", "shard", 10)
pull("g2", "broadcast", 4)
after = scrape()
for key, want in (('tmix_batches_served_total{group="g1"}', 10),
                  ('tmix_images_served_total{group="g1"}', 500),
                  ('tmix_batches_served_total{group="g2"}', 4),
                  ('tmix_images_served_total{group="g2"}', 200)):
    if after.get(key) != want:
        fail(f"{key} = {after.get(key)}, expected {want}")
progress = after['tmix_group_epoch_progress{group="g1"}']
if progress != 0.5:  # 10 of 20 batches acknowledged
    fail(f"g1's epoch progress {progress}, expected 0.5")
for name in ("tmix_batch_queued_seconds", "tmix_batch_read_seconds", "tmix_batch_mix_seconds"):
    histogram_ok(after, name, 14)
histogram_ok(after, "tmix_next_seconds", 14)
if after["tmix_uptime_seconds"] < before["tmix_uptime_seconds"]:
    fail("uptime went back")

# A trainer that holds its batch is a trainer and a member while it does.
holder = subprocess.Popen([tmixctl, "pull", "-e", endpoint, "--group", "g3", "--batches", "1",
                           "--hold-ms", "3000"], stdout=subprocess.DEVNULL)
seen = False
for _ in range(50):
    s = scrape()
    if s["tmix_trainers"] == 1 and s.get('tmix_group_members{group="g3"}') == 1:
        seen = True
        break
    time.sleep(0.05)
if holder.wait() != 0 or not seen:
    fail("a trainer holding a batch never showed in tmix_trainers and tmix_group_members")

for path, method, code in (("/nope", "GET", 404), ("/metrics", "POST", 405)):
    try:
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None),
            timeout=5)
        fail(f"{method} {path} answered 200")
    except urllib.error.HTTPError as e:
        if e.code != code:
            fail(f"{method} {path}: {e.code}, expected {code}")

# Listening on 127.0.0.1 only: /proc/net/tcp names every listening socket (state 0A).
listening = [line.split()[1] for line in open("/proc/net/tcp").read().splitlines()[1:]
             if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port]
if listening != ["0100007F:%04X" % port]:
    fail(f"listening on {listening}, expected 127.0.0.1 only")
print("PASS metrics")
