# Sourced by scripts/conformance.sh and scripts/bench-cri.sh: two private docker-registry
# (distribution) instances on loopback for the look-alike critest images, as
# ../shared/cri-tools/images/registry.sh makes them (one open, one with htpasswd basic auth,
# tester / s3cret), but on free ports and with their state in a directory of the caller's, so
# two runs at once never share or stop each other's registries.
#
#   registries_start DIR   start both; sets REG_PORT and AUTH_REG_PORT (from CRI_REGISTRY_PORT and
#                          CRI_AUTH_REGISTRY_PORT when the caller sets them, else free ports)
#   registries_stop DIR    stop the ones started with DIR (by their recorded pids)

# A TCP port below the ephemeral range (32768-) that nothing listens on at 127.0.0.1 (a race with another process is caught by
# registry_start_one, which then tries another).
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 12000))
    [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return 0; }
  done
  echo "registries.sh: no free port found" >&2
  return 1
}

# registry_start_one DIR NAME PORT AUTH(0/1): serve on PORT; fails when it does not answer.
registry_start_one() {
  local dir=$1 name=$2 port=$3 auth=$4 cfg=$1/$2.yml pid code
  mkdir -p "$dir/data-$name"
  cat >"$cfg" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data-$name
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
  if [ "$auth" = 1 ]; then
    [ -f "$dir/htpasswd" ] || htpasswd -Bbn tester s3cret >"$dir/htpasswd"
    printf 'auth:\n  htpasswd:\n    realm: cri-test-registry\n    path: %s\n' "$dir/htpasswd" >>"$cfg"
  fi
  docker-registry serve "$cfg" >"$dir/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/$name.pid"
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 1
    # Listening ourselves (not another process that holds the port), and answering.
    if ss -Hltnp "sport = :$port" 2>/dev/null | grep -q "pid=$pid,"; then
      code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
      if [ "$code" = 200 ] || [ "$code" = 401 ]; then return 0; fi
    fi
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  return 1
}

# registry_start DIR NAME AUTH FIXED_PORT: on FIXED_PORT when set, else on a free port (a few
# tries); prints the port.
registry_start() {
  local dir=$1 name=$2 auth=$3 fixed=$4 port
  for _ in 1 2 3 4 5; do
    port=${fixed:-$(free_port)} || return 1
    if registry_start_one "$dir" "$name" "$port" "$auth"; then
      echo "$port"
      return 0
    fi
    [ -z "$fixed" ] || break
  done
  echo "registries.sh: registry $name did not start (port ${fixed:-free}); its log:" >&2
  cat "$dir/$name.log" >&2
  return 1
}

registries_start() {
  local dir=$1
  mkdir -p "$dir"
  REG_PORT=$(registry_start "$dir" open 0 "${CRI_REGISTRY_PORT:-}") || return 1
  AUTH_REG_PORT=$(registry_start "$dir" auth 1 "${CRI_AUTH_REGISTRY_PORT:-}") || return 1
  echo "registries: 127.0.0.1:$REG_PORT (open), 127.0.0.1:$AUTH_REG_PORT (htpasswd)"
}

registries_stop() {
  local dir=$1 f pid
  for f in "$dir"/open.pid "$dir"/auth.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  return 0
}
