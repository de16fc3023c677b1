#!/usr/bin/env bash
# Operations: log reopening, live settings, the metrics endpoint.
#   operations.sh SCENARIO    (sighup, config, metrics)
# Real tmixd daemons and tmixctl trainers (daemons.sh says what the environment needs).
set -euo pipefail
. "$(dirname "$0")/daemons.sh"

case $scenario in
sighup)
  # SIGHUP reopens the log file, so that logrotate can move it away.
  start_daemon a --server.log_file="$work/tmixd.log"
  mv "$work/tmixd.log" "$work/tmixd.log.1"
  kill -HUP "$daemon"
  for _ in $(seq 50); do [ -s "$work/tmixd.log" ] && break; sleep 0.1; done
  grep -q "SIGHUP: log reopened" "$work/tmixd.log" || fail "no new log after SIGHUP"
  grep -q "serving" "$work/tmixd.log.1" || fail "the old log lost its lines"
  stop_daemon "$daemon"
  ;;
config)
  # tmixctl config: every setting read back as the daemon runs with it; the reloadable ones
  # changed and in effect at once; fixed keys, bad values and unknown keys refused with the
  # reason; and over tcp:// settings are read, never changed.
  start_daemon a --server.lease_timeout_s=30
  cfg() { "$TMIXCTL" config "$@" -e "ipc://$work/a.sock"; }
  cfg get >"$work/all.txt" || fail "config get"
  [ "$(wc -l <"$work/all.txt")" -eq "$("$TMIXD" serve --print-config | grep -c '^[a-z_]* =')" ] ||
    fail "config get lists $(wc -l <"$work/all.txt") settings"
  grep -qx "server.workers = 2" "$work/all.txt" || fail "server.workers is not 2"
  [ "$(grep -c '# reloadable$' "$work/all.txt")" -eq 3 ] || fail "not 3 reloadable settings"
  [ "$(cfg get server.lease_timeout_s)" = 30 ] || fail "lease_timeout_s is not 30"
  # A shorter lease takes a held batch back at once: the log says after how long.
  cfg set server.lease_timeout_s 0.5 >/dev/null || fail "config set lease_timeout_s"
  [ "$(cfg get server.lease_timeout_s)" = 0.5 ] || fail "lease_timeout_s is not 0.5"
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --group held --batches 1 --hold-ms 2500 >/dev/null ||
    fail "the holding trainer"
  grep -q "group held expired after 0.5 s" "$work/a.log" || fail "no expiry after 0.5 s"
  # log_level error hides a trainer's arrival; info shows the next one.
  cfg set server.log_level error >/dev/null || fail "config set log_level"
  pull a "$work/quiet" --group quiet --batches 1
  ! grep -q "joined group quiet" "$work/a.log" || fail "an info line at log_level error"
  cfg set server.log_level info >/dev/null
  pull a "$work/loud" --group loud --batches 1
  grep -q "joined group loud" "$work/a.log" || fail "no info line at log_level info"
  grep -q "config: server.log_level = info (tmixctl config set)" "$work/a.log" || fail "set not logged"
  expect_refusal() { # PATTERN ARGS...: tmixctl config ARGS exits 1 saying PATTERN
    local pattern=$1
    shift
    set +e
    "$TMIXCTL" config "$@" >/dev/null 2>"$work/refused.txt"
    local rc=$?
    set -e
    [ "$rc" -eq 1 ] && grep -q -- "$pattern" "$work/refused.txt" ||
      fail "tmixctl config $* exited $rc: $(cat "$work/refused.txt")"
  }
  expect_refusal "config set server.endpoint: fixed while tmixd runs" \
    set server.endpoint ipc:///tmp/x -e "ipc://$work/a.sock"
  expect_refusal "\[server\] lease_timeout_s = 'abc': not a number" \
    set server.lease_timeout_s abc -e "ipc://$work/a.sock"
  expect_refusal "\[server\] lease_timeout_s = '0': out of range" \
    set server.lease_timeout_s 0 -e "ipc://$work/a.sock"
  expect_refusal "no setting 'mix.nope'" get mix.nope -e "ipc://$work/a.sock"
  [ "$(cfg get server.lease_timeout_s)" = 0.5 ] || fail "a refused set changed the value"
  stop_daemon "$daemon"
  start_tcp_daemon b
  [ "$("$TMIXCTL" config get server.log_level -e "tcp://127.0.0.1:$port")" = info ] ||
    fail "config get over tcp://"
  expect_refusal "config set: only over the ipc:// endpoint" \
    set server.log_level debug -e "tcp://127.0.0.1:$port"
  stop_daemon "$daemon"
  ;;
metrics)
  # The Prometheus endpoint, scraped while real trainers pull (check_metrics.py); a second
  # daemon asking for the same port stops with one line naming it.
  port=$(free_port)
  start_daemon a --server.metrics_port="$port"
  grep -q "metrics at http://127.0.0.1:$port/metrics" "$work/a.log" || fail "no log line for the metrics"
  python3 "$CHECK_METRICS" "$TMIXCTL" "ipc://$work/a.sock" "$port" || fail "check_metrics.py"
  set +e
  "$TMIXD" serve --server.endpoint="ipc://$work/b.sock" --server.state_dir="$work/b.state" \
    --dataset.path="$work/idx" --server.metrics_port="$port" >/dev/null 2>"$work/b.err"
  rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "a second daemon on metrics port $port started"
  grep -q "metrics_port $port: 127.0.0.1:$port: Address already in use" "$work/b.err" ||
    fail "the second daemon said: $(cat "$work/b.err")"
  stop_daemon "$daemon"
  ;;
*)
  echo "unknown scenario $scenario" >&2
  exit 2
  ;;
esac
echo "PASS serve.$scenario"
