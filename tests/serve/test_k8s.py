"""test_k8s.py TMIXD MANIFEST: deploy/k8s/tmixd.yaml holds a ConfigMap and a DaemonSet whose
pieces fit together (the config mounted where the command reads it, the socket directory a
hostPath at the endpoint, probes on that endpoint, GPU nodes only), and tmixd of this build
accepts the ConfigMap's config with the DaemonSet's command line (--print-config parses and
checks every key and value without serving). Skips (77) without PyYAML."""
import os
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("SKIP: no PyYAML (apt-get install python3-yaml)")
    sys.exit(77)

tmixd, manifest = sys.argv[1], sys.argv[2]
docs = {d["kind"]: d for d in yaml.safe_load_all(open(manifest))}
assert set(docs) == {"ConfigMap", "DaemonSet"}, docs.keys()
ds, cm = docs["DaemonSet"], docs["ConfigMap"]
assert ds["apiVersion"] == "apps/v1"
spec = ds["spec"]["template"]["spec"]
assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
[c] = spec["containers"]
assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
command = c["command"]
assert command[:4] == ["/opt/tmix/bin/tmixd", "serve", "-c", "/etc/tmix/tmixd.conf"], command
endpoint = next(a.split("=", 1)[1] for a in command if a.startswith("--server.endpoint="))
assert endpoint == "ipc:///run/tmix/tmixd.sock", endpoint
volumes = {v["name"]: v for v in spec["volumes"]}
mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
assert volumes[mounts["/run/tmix"]]["hostPath"]["path"] == "/run/tmix"
assert volumes[mounts["/etc/tmix"]]["configMap"]["name"] == cm["metadata"]["name"]
for probe in ("readinessProbe", "livenessProbe"):
    args = c[probe]["exec"]["command"]
    assert args[:2] == ["/opt/tmix/bin/tmixctl", "status"] and endpoint in args, args

with tempfile.TemporaryDirectory() as tmp:
    conf = os.path.join(tmp, "tmixd.conf")
    with open(conf, "w") as f:
        f.write(cm["data"]["tmixd.conf"])
    args = [tmixd] + [conf if a == "/etc/tmix/tmixd.conf" else a for a in command[1:]]
    out = subprocess.run(args + ["--print-config"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"endpoint = {endpoint}" in out.stdout and "path = /data/imagenet" in out.stdout
print("PASS k8s")
