#!/usr/bin/env bash
# Ingress benchmark, run on demand (not in CI), as root: requests/s and p50/p99 latency with
# wrk, in the same run, straight to a pod (busybox httpd on its pod IP) vs through the
# daemon's ingress proxy over HTTP and over HTTPS (TLS 1.3, keep-alive from wrk); the
# daemon's RSS (the proxy runs inside it) idle and at its peak under load. The pod's httpd has
# no TLS, so HTTPS through the proxy is compared with plain HTTP straight to the pod.
# Uses its own root, bridge (kbenchi0), CIDRs, nftables table and ingress ports, and resets
# them at the end. PROFILE=debug uses a debug build; D (10s), C (connections, 16), T (2).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${D:-10s} C=${C:-16} T=${T:-2} PROFILE=${PROFILE:-release}
HTTP_PORT=${HTTP_PORT:-18480} HTTPS_PORT=${HTTPS_PORT:-18443}
bash scripts/setup-debian.sh
if [ "$PROFILE" = release ]; then
  cargo build --release --bin kinglet -p kinglet
else
  cargo build --bin kinglet -p kinglet
fi
bin="${CARGO_TARGET_DIR:-target}/$PROFILE/kinglet"
work=$(mktemp -d /tmp/kinglet-bench-ingress.XXXXXX)
flags=(--socket "$work/k.sock" --root "$work/root" --run-root "$work/run" --bridge kbenchi0
  --nft-table kbenchi)
cleanup() {
  [ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null && sleep 0.5 || true
  "$bin" reset "${flags[@]}" --yes >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
echo "work dir: $work" >&2
cat >"$work/config.toml" <<EOF
pod-cidr = "10.238.0.0/16"
service-cidr = "10.239.0.0/24"
[ingress]
http-port = $HTTP_PORT
https-port = $HTTPS_PORT
EOF
bash tests/images/build-busybox-image.sh "$work/img" >/dev/null
"$bin" daemon --config "$work/config.toml" "${flags[@]}" --manifests "$work/manifests" \
  >"$work/daemon.log" 2>&1 &
dpid=$!
for _ in $(seq 100); do "$bin" image ls --socket "$work/k.sock" >/dev/null 2>&1 && break; sleep 0.1; done
"$bin" image import --socket "$work/k.sock" "$work/img/busybox.tar" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
indent() { sed 's/^/    /'; }
cat >"$work/app.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: web
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www']
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Secret
metadata: {name: bench-tls}
type: kubernetes.io/tls
stringData:
  tls.crt: |
$(indent <"$work/tls.crt")
  tls.key: |
$(indent <"$work/tls.key")
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench}
spec:
  tls: [{hosts: [bench.test], secretName: bench-tls}]
  rules:
  - host: bench.test
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
EOF
"$bin" apply --socket "$work/k.sock" -f "$work/app.yaml" >/dev/null
for _ in $(seq 300); do
  out=$("$bin" get --socket "$work/k.sock" pods web -o json 2>/dev/null || true)
  echo "$out" | jq -e '.status.conditions[]? | select(.type=="Ready" and .status=="True")' >/dev/null 2>&1 && break
  sleep 0.2
done
pod_ip=$("$bin" get --socket "$work/k.sock" pods web -o json | jq -r .status.podIP)
for _ in $(seq 100); do
  curl -fs -o /dev/null --resolve "bench.test:$HTTP_PORT:127.0.0.1" "http://bench.test:$HTTP_PORT/index.html" && break
  sleep 0.1
done
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$dpid/status"; }
idle=$(rss_kib)
peak=$idle
# One wrk run; prints "req/s p50_ms p99_ms" and samples the daemon's RSS meanwhile.
run() {
  local out
  out=$(wrk -t"$T" -c"$C" -d"$D" --latency "$@" & wpid=$!
    while kill -0 "$wpid" 2>/dev/null; do r=$(rss_kib); [ "$r" -gt "$(cat "$work/peak" 2>/dev/null || echo 0)" ] && echo "$r" >"$work/peak"; sleep 0.2; done
    wait "$wpid")
  local rps p50 p99
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v } else { sub(/s$/, "", v); print v*1000 } }'; }
  p50=$(ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
  p99=$(ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
  echo "$rps $p50 $p99 $errs"
}
[ -n "$pod_ip" ] && [ "$pod_ip" != null ] || { echo "pod web has no IP; see $work/daemon.log (KEEP=1 keeps it)" >&2; exit 1; }
echo "wrk -t$T -c$C -d$D, GET /index.html (6 bytes), $PROFILE build, $(nproc) cores"
direct=$(run "http://$pod_ip:8080/index.html")
viahttp=$(run -H "Host: bench.test" "http://127.0.0.1:$HTTP_PORT/index.html")
viahttps=$(run -H "Host: bench.test" "https://127.0.0.1:$HTTPS_PORT/index.html")
peak=$(cat "$work/peak" 2>/dev/null || echo "$idle")
printf '%-26s %10s %9s %9s\n' path req/s p50_ms p99_ms
for row in "direct-to-pod(http) $direct" "ingress(http) $viahttp" "ingress(https) $viahttps"; do
  # shellcheck disable=SC2086
  set -- $row
  printf '%-26s %10s %9s %9s %s\n' "$1" "$2" "$3" "$4" "${*:5}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
read -r d_rps d_p50 d_p99 _ <<<"$direct"
read -r h_rps h_p50 h_p99 _ <<<"$viahttp"
read -r s_rps s_p50 s_p99 _ <<<"$viahttps"
echo "ratio ingress(http)/direct:  req/s $(ratio "$h_rps" "$d_rps")  p50 $(ratio "$h_p50" "$d_p50")  p99 $(ratio "$h_p99" "$d_p99")"
echo "ratio ingress(https)/direct: req/s $(ratio "$s_rps" "$d_rps")  p50 $(ratio "$s_p50" "$d_p50")  p99 $(ratio "$s_p99" "$d_p99")"
echo "daemon RSS: idle $((idle / 1024)) MiB, peak under load $((peak / 1024)) MiB"
