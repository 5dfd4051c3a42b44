#!/usr/bin/env bash
# Bug A (found by sc-chaos): a job queued behind a cluster resource when its
# daemon is killed and restarted is treated by the new daemon as having held
# the resource (its early-placed held child populates its cgroup): the held
# child is SIGKILLed, but the job stays queued, is granted later, "starts"
# the dead child and ends at once. sc exec exits 137 and the command never
# ran; history says outcome "stopped". Expected: exit 0, "THE COMMAND RAN".
# Three daemons on 127.0.0.1-3 (port 27946); removes everything on exit.
set -u
SC="${SC_BIN:-$(dirname "$0")/../../target/debug/sc}"
D=$(mktemp -d /tmp/repro-XXXX)
trap 'kill ${H:-} ${W:-} ${P1:-} ${P2:-} ${P3:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
$SC cluster init-ca $D/ca >/dev/null
for i in 1 2 3; do
  n=host-$i
  $SC cluster issue --ca $D/ca $n --ip 127.0.0.$i --out $D/$n >/dev/null
  mkdir -p $D/$n/state
  seeds=$(for j in 1 2 3; do [ $j != $i ] && printf '"127.0.0.%s:27946",' $j; done)
  cat > $D/$n/sc.toml <<EOT
[daemon]
socket = "$D/$n/sc.sock"
state_dir = "$D/$n/state"
[host]
memory = "4G"
cores = 2
reserve = "0"
[cluster]
listen = "127.0.0.$i:27946"
seeds = [${seeds%,}]
ca = "$D/$n/ca.crt"
cert = "$D/$n/node.crt"
key = "$D/$n/node.key"
members = ["host-1", "host-2", "host-3"]
lease = "3s"
[resources]
e2e = { capacity = 1, mode = "quorum" }
EOT
done
start() { $SC daemon --config $D/host-$1/sc.toml >>$D/host-$1/log 2>&1 & echo $!; }
P1=$(start 1); P2=$(start 2); P3=$(start 3)
sleep 4
# host-2 holds e2e for 8 s; host-1 queues a job behind it.
SC_SOCKET=$D/host-2/sc.sock $SC exec --needs e2e -- sleep 8 & H=$!
sleep 1
SC_SOCKET=$D/host-1/sc.sock $SC exec --json --needs e2e -- sh -c 'echo THE COMMAND RAN' > $D/out 2> $D/err & W=$!
sleep 1
kill -9 $P1; sleep 1; P1=$(start 1)
wait $W; echo "waiter's sc exec exit: $?"
echo "its stdout: $(cat $D/out)"; grep -o '"event":"[a-z_]*"' $D/err | tr '\n' ' '; echo
grep -E "held cluster resources|job ended" $D/host-1/log | cut -c1-200
tail -1 $D/host-1/state/history.jsonl | cut -c1-400
wait $H
