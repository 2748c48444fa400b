# shellcheck shell=bash
# Set-up helpers shared by scripts/run.sh, scripts/test.sh, scripts/venv.sh and .ci/run.
# Source this file; it defines functions and a few variables and runs nothing.

INFEROPT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${INFEROPT_VENV:-$INFEROPT_ROOT/.venv}"
LOCAL_DIR="$INFEROPT_ROOT/.local"
LLAMA_CPP_CMAKE_ARGS='-DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"'

log() { printf '==> %s\n' "$*" >&2 || true; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "root is needed to run: $*"
  fi
}

# Install Debian packages; refresh the package lists only when a plain install fails.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* with your package manager"
  log "installing Debian packages: $*"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; then
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
  fi
}

# Hash of the given requirement files, constraints.txt and the venv's Python version:
# the venv is reinstalled exactly when one of them changes.
requirements_hash() {
  {
    "$VENV/bin/python" -c 'import sys; print(sys.version)'
    for file in "$@" constraints.txt; do
      printf '%s\n' "$file"
      cat "$INFEROPT_ROOT/$file"
    done
  } | sha256sum | cut -d' ' -f1
}

stamp_matches() { # stamp-file hash
  [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]
}

# ensure_venv runtime|dev: create .venv if missing and install requirements.txt
# (runtime) or requirements-dev.txt (dev, which includes requirements.txt) with
# -c constraints.txt, only when the files changed since the last install.
# INFEROPT_FORCE_INSTALL=1 reinstalls regardless.
ensure_venv() {
  local kind="${1:-runtime}"
  local files=(requirements.txt)
  [ "$kind" = dev ] && files+=(requirements-dev.txt)
  if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 || die "$python not found: install Python 3.11"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
      die "Python 3.11 or newer is needed ($python is $("$python" -V 2>&1))"
    log "creating the virtual environment $VENV"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
  fi
  local runtime_hash dev_hash
  runtime_hash="$(requirements_hash requirements.txt)"
  dev_hash="$(requirements_hash requirements.txt requirements-dev.txt)"
  if [ "${INFEROPT_FORCE_INSTALL:-0}" != 1 ]; then
    # A dev install covers the runtime requirements too.
    stamp_matches "$VENV/.inferopt-dev.sha256" "$dev_hash" && return 0
    [ "$kind" = runtime ] && stamp_matches "$VENV/.inferopt-runtime.sha256" "$runtime_hash" && return 0
  fi
  local top="${files[${#files[@]} - 1]}"
  # llama-cpp-python compiles llama.cpp for this CPU (-march=native) but without AMX: some VMs
  # advertise AMX in cpuid yet fault on its instructions (SIGILL in quantized matmuls, measured
  # here). pip caches the built wheel, so only a machine's first build compiles; CMAKE_ARGS overrides.
  export CMAKE_ARGS="${CMAKE_ARGS:-$LLAMA_CPP_CMAKE_ARGS}"
  log "installing $top into $VENV (requirements changed since the last install)"
  (cd "$INFEROPT_ROOT" && "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    -c constraints.txt -r "$top")
  printf '%s\n' "$runtime_hash" >"$VENV/.inferopt-runtime.sha256"
  if [ "$kind" = dev ]; then
    printf '%s\n' "$dev_hash" >"$VENV/.inferopt-dev.sha256"
  else
    rm -f "$VENV/.inferopt-dev.sha256"
  fi
}

# ensure_llama_cpp_tools: llama.cpp's HF → GGUF converter for the installed llama-cpp-python,
# unpacked from its sdist into ~/.cache/inferopt/llama.cpp/<version>/ (a no-op once there).
# Not fatal: without it only the gguf_convert pass is unavailable (its preflight says how to fix it).
ensure_llama_cpp_tools() {
  bash "$INFEROPT_ROOT/scripts/llama_cpp_tools.sh" ||
    log "warning: could not fetch llama.cpp's converter; gguf_convert will refuse to run until \`bash scripts/llama_cpp_tools.sh\` succeeds"
}

ensure_redis_binary() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  command -v redis-server >/dev/null 2>&1 || die "redis-server is still missing after installing it"
}

ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
  [ -x /usr/bin/chromium ] || die "/usr/bin/chromium is still missing after installing it"
}

free_port() {
  "$VENV/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

port_is_free() {
  "$VENV/bin/python" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

# wait_for_redis URL SECONDS: succeed once the server answers PING.
wait_for_redis() {
  "$VENV/bin/python" - "$1" "${2:-0}" <<'PY'
import sys
import time

import redis

url, patience = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + patience
while True:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
        break
    except (redis.RedisError, OSError, ValueError) as error:
        if time.monotonic() >= deadline:
            print(f"redis at {url} does not answer PING: {error}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.1)
PY
}

# ensure_redis: use $REDIS_URL if set (it must answer PING), else start a private
# redis-server on a free port in the background (its pid in REDIS_PID, its own
# process group, nothing saved to disk) and export REDIS_URL for the children, and
# INFEROPT_CACHE_URL (its database 1) unless set.
REDIS_PID=""
ensure_redis() {
  if [ -n "${REDIS_URL:-}" ]; then
    wait_for_redis "$REDIS_URL" 0 || die "REDIS_URL is set but that server does not answer"
    log "using Redis at $REDIS_URL"
    return 0
  fi
  ensure_redis_binary
  local port dir
  port="$(free_port)"
  dir="$LOCAL_DIR/redis"
  mkdir -p "$dir"
  setsid redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --dir "$dir" --logfile "$dir/redis.log" </dev/null &
  REDIS_PID=$!
  export REDIS_URL="redis://127.0.0.1:$port/0"
  # Database 1 of the same private server: the cache every web process and the worker share.
  export INFEROPT_CACHE_URL="${INFEROPT_CACHE_URL:-redis://127.0.0.1:$port/1}"
  if ! wait_for_redis "$REDIS_URL" 10; then
    tail -n 20 "$dir/redis.log" >&2 || true
    die "the local redis-server did not start"
  fi
  log "started redis-server on 127.0.0.1:$port (pid $REDIS_PID, stopped on exit)"
}

is_running() { # pid: alive and not a zombie
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ $state != Z* ]]
}

# stop_group PID NAME [SECONDS]: TERM the process group led by PID (started with
# setsid), wait up to SECONDS for its leader, then KILL whatever is left of it.
stop_group() {
  local pid="$1" name="$2" patience="${3:-15}"
  [ -n "$pid" ] || return 0
  if is_running "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while is_running "$pid" && [ "$waited" -lt $((patience * 10)) ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if is_running "$pid"; then
      log "$name did not stop within ${patience}s; killing it"
    fi
  fi
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
