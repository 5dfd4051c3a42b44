#!/usr/bin/env bash
# Bug B (found by sc-chaos): in available mode a daemon restarted while
# another host holds e2e (capacity 1) grants e2e before it has heard from
# its peers, although the network is intact: two holders at once.
# Expected: the host-3 job waits until host-2's job ends (about 7 s).
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

available_down = "1s"
[resources]
e2e = { capacity = 1, mode = "available" }
EOT
done
start() { $SC daemon --config $D/host-$1/sc.toml >>$D/host-$1/log 2>&1 & echo $!; }
P1=$(start 1); P2=$(start 2); P3=$(start 3)
sleep 4
# host-2 holds e2e for 8 s; host-3's daemon is killed and restarted, and
# asked for e2e right away.
SC_SOCKET=$D/host-2/sc.sock $SC exec --needs e2e -- sleep 8 & H=$!
sleep 1
kill -9 $P3; sleep 1; P3=$(start 3)
while [ ! -S $D/host-3/sc.sock ]; do sleep 0.05; done; sleep 0.2
t0=$(date +%s%N)
SC_SOCKET=$D/host-3/sc.sock $SC exec --needs e2e -- true; echo "host-3 exec exit $? after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
if kill -0 $H 2>/dev/null; then echo "BUG: host-3 ran an e2e job while host-2's e2e job still held it"; fi
wait $H
