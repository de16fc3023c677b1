#!/usr/bin/env bash
# test_systemd.sh PART: tmixd as a systemd service, checked without a running systemd.
#   unit     deploy's tmixd.service passes `systemd-analyze verify`, its man pages found
#   notify   the sd_notify protocol, heard on a socket of our own as $NOTIFY_SOCKET: READY=1
#            only once the endpoint answers, STATUS= with the images/s of real trainers,
#            WATCHDOG=1 every half $WATCHDOG_USEC, STOPPING=1 on SIGTERM
#   journal  with stderr the journal ($JOURNAL_STREAM), lines carry a syslog priority
# Needs TMIXD, TMIXCTL, UNIT (the configured unit), MANDIR (the built man pages), FMNIST.
set -euo pipefail
part=$1
what=systemd.$part
. "$(dirname "$0")/scratch.sh"
serve() { # serve ARGS...: tmixd on ipc://$work/d.sock, stderr to $work/log.txt
  "$TMIXD" serve --server.endpoint="ipc://$work/d.sock" --server.state_dir="$work/state" \
    --dataset.path="$FMNIST" --server.workers=2 "$@" 2>>"$work/log.txt" &
  daemon=$!
  pids+=("$daemon")
}

case $part in
unit)
  command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }
  # The installed ExecStart names the installed tmixd; verify wants an executable there.
  sed "s|^ExecStart=[^ ]*/tmixd |ExecStart=$TMIXD |" "$UNIT" >"$work/tmixd.service"
  grep -q "^ExecStart=$TMIXD serve " "$work/tmixd.service" || fail "no ExecStart to point at the build"
  mkdir -p "$work/man/man8" "$work/man/man5"
  ln -s "$MANDIR/tmixd.8" "$work/man/man8/tmixd.8"
  ln -s "$MANDIR/tmixd.conf.5" "$work/man/man5/tmixd.conf.5"
  if command -v man >/dev/null; then man_check=(); else man_check=(--man=no); fi
  MANPATH=$work/man systemd-analyze verify "${man_check[@]}" "$work/tmixd.service" \
    >"$work/verify.txt" 2>&1 || fail "systemd-analyze verify: $(cat "$work/verify.txt")"
  [ ! -s "$work/verify.txt" ] || fail "systemd-analyze verify said: $(cat "$work/verify.txt")"
  # A unit with a typo must fail the same check (verify warns, exit status 0), or the check
  # proves nothing.
  sed 's/^Type=notify/Type=notfiy/' "$work/tmixd.service" >"$work/typo.service"
  MANPATH=$work/man systemd-analyze verify "${man_check[@]}" "$work/typo.service" \
    >"$work/typo.txt" 2>&1 || true
  grep -q "notfiy" "$work/typo.txt" || fail "verify passed a unit with Type=notfiy"
  ;;
notify)
  [ -d "$FMNIST" ] || { echo "SKIP: $FMNIST missing (apt-get install dataset-fashion-mnist)"; exit 77; }
  # The listener: one line per datagram (fields joined by ' | '), until STOPPING=1.
  python3 - "$work/notify.sock" "$work/notify.txt" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
with open(sys.argv[2], "a") as out:
    while True:
        message = s.recv(4096).decode()
        out.write(message.replace("\n", " | ") + "\n")
        out.flush()
        if "STOPPING=1" in message:
            break
PY
  listener=$!
  pids+=("$listener")
  for _ in $(seq 50); do [ -S "$work/notify.sock" ] && break; sleep 0.1; done
  NOTIFY_SOCKET=$work/notify.sock WATCHDOG_USEC=400000 serve
  for _ in $(seq 100); do grep -q "READY=1" "$work/notify.txt" 2>/dev/null && break; sleep 0.1; done
  grep -q "^READY=1 | STATUS=serving idx:$FMNIST (train) on ipc://$work/d.sock$" "$work/notify.txt" ||
    fail "no READY=1 naming the data set and endpoint"
  # READY means serving: the endpoint answers at once, no retry.
  "$TMIXCTL" status -e "ipc://$work/d.sock" --timeout 2 >/dev/null || fail "READY=1, but no answer"
  "$TMIXCTL" pull -e "ipc://$work/d.sock" --batches 200 --batch-size 100 --print-ids \
    >"$work/ids.txt" || fail "pull"
  # A STATUS after the pull (one every 5 s) counts its images.
  for _ in $(seq 120); do
    grep -q "^STATUS=0 trainers in 1 group, [0-9.]* images/s, 200 batches served$" \
      "$work/notify.txt" && break
    sleep 0.1
  done
  grep -q "^STATUS=0 trainers in 1 group, [0-9.]* images/s, 200 batches served$" \
    "$work/notify.txt" || fail "no STATUS after 200 batches"
  grep "^STATUS=.* images/s" "$work/notify.txt" | grep -qv "^STATUS=[^,]*, 0 images/s" ||
    fail "every STATUS says 0 images/s"
  # One WATCHDOG=1 per 200 ms: over the 6 s or more since READY, at least 20.
  [ "$(grep -c '^WATCHDOG=1$' "$work/notify.txt")" -ge 20 ] || fail "too few WATCHDOG=1"
  stop_daemon "$daemon"
  wait "$listener" || fail "the listener ended without STOPPING=1"
  grep -q "^STOPPING=1 | STATUS=draining$" "$work/notify.txt" || fail "no STOPPING=1"
  # Without $NOTIFY_SOCKET nothing is sent and nothing is said about it.
  : >"$work/log.txt"
  serve
  wait_answer "ipc://$work/d.sock" d
  stop_daemon "$daemon"
  ! grep -q "sd_notify" "$work/log.txt" || fail "sd_notify was logged without NOTIFY_SOCKET"
  ;;
journal)
  [ -d "$FMNIST" ] || { echo "SKIP: $FMNIST missing (apt-get install dataset-fashion-mnist)"; exit 77; }
  : >"$work/log.txt"
  JOURNAL_STREAM=$(stat -c '%d:%i' "$work/log.txt") serve
  wait_answer "ipc://$work/d.sock" d
  stop_daemon "$daemon"
  head -1 "$work/log.txt" | grep -q "^<6>info: serving idx:" || fail "no priority prefix"
  grep -q "^<6>info: stopped$" "$work/log.txt" || fail "no <6>info: stopped"
  ! grep -qv "^<[0-7]>" "$work/log.txt" || fail "a line without a priority"
  # Another file's JOURNAL_STREAM (stderr is not the journal): the time-and-pid form.
  mv "$work/log.txt" "$work/other.txt"
  JOURNAL_STREAM=$(stat -c '%d:%i' "$work/other.txt") serve
  wait_answer "ipc://$work/d.sock" d
  stop_daemon "$daemon"
  head -1 "$work/log.txt" | grep -qE "^[0-9-]+T[0-9:.]+Z tmixd\[$daemon\] info: serving" ||
    fail "not the time-and-pid form: $(head -1 "$work/log.txt")"
  ;;
*)
  echo "unknown part $part" >&2
  exit 2
  ;;
esac
echo "PASS $part"
