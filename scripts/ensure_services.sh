#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer before the tests run.
# Down but installed: starts them. Not installed: installs Debian's packages (as root, like
# ensure_chromium.sh), gives the new PostgreSQL cluster trust auth for user postgres from 127.0.0.1
# only (it is the tests' throwaway cluster), starts both, and says what it did.
# DRY_RUN=1 prints the commands that would change the machine instead of running them.
set -u
PGHOST=${PGHOST:-127.0.0.1}; PGPORT=${PGPORT:-5432}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}; REDIS_PORT=${REDIS_PORT:-6379}
PG_CONF_ROOT=${PG_CONF_ROOT:-/etc/postgresql}  # Debian's cluster configs: VERSION/CLUSTER/pg_hba.conf
DRY_RUN=${DRY_RUN:-0}
TRUST_LINE="host all postgres 127.0.0.1/32 trust"
done_list=()
apt_updated=0

run() {
  if [ "$DRY_RUN" = 1 ]; then echo "would run: $*"; else "$@"; fi
}

run_quiet() {
  if [ "$DRY_RUN" = 1 ]; then echo "would run: $*"; else "$@" >/dev/null; fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() {  # host port name
  [ "$DRY_RUN" = 1 ] && return 0
  for _ in $(seq 1 30); do port_open "$1" "$2" && return 0; sleep 1; done
  echo "error: $3 did not come up on $1:$2" >&2; return 1
}

apt_install() {  # package: install it or say how, and stop
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $1 is not installed and this script installs packages only as root with apt-get." >&2
    echo "  Install it (Debian: sudo apt-get install $1), or point the tests at a running server" >&2
    echo "  (DATABASE_URL=postgres://USER@HOST:PORT/rlhf_studio, REDIS_URL=redis://HOST:PORT/9)." >&2
    exit 1
  fi
  echo "Installing Debian's $1"
  export DEBIAN_FRONTEND=noninteractive
  if [ "$apt_updated" = 0 ]; then run apt-get update -qq || exit 1; apt_updated=1; fi
  run_quiet apt-get install -y -qq "$1" || { echo "error: apt-get install $1 failed" >&2; exit 1; }
  done_list+=("installed $1")
}

pg_version() { ls "$PG_CONF_ROOT" 2>/dev/null | sort -V | tail -n1; }

trust_postgres_from_loopback() {  # pg_hba.conf: the first matching line wins, so ours goes on top
  local hba="$PG_CONF_ROOT/$1/main/pg_hba.conf"
  grep -qxF "$TRUST_LINE" "$hba" 2>/dev/null && return 0
  run sed -i "1i # rlhf-studio: the test cluster lets user postgres in from this machine only\\n$TRUST_LINE" "$hba" \
    || { echo "error: could not edit $hba" >&2; exit 1; }
  done_list+=("trust auth for postgres from 127.0.0.1 in $hba")
}

if ! port_open "$PGHOST" "$PGPORT"; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$(pg_version)" ]; then
    version=$(pg_version)
    echo "PostgreSQL $version is down: starting it"
    run pg_ctlcluster --skip-systemctl-redirect "$version" main start
    done_list+=("started PostgreSQL $version/main")
  else
    apt_install postgresql
    version=$(pg_version)
    [ -z "$version" ] && [ "$DRY_RUN" = 1 ] && version=VERSION
    [ -z "$version" ] && { echo "error: no cluster under $PG_CONF_ROOT after installing postgresql" >&2; exit 1; }
    trust_postgres_from_loopback "$version"
    # restart: the package may have started the cluster before pg_hba.conf changed
    run pg_ctlcluster --skip-systemctl-redirect "$version" main restart
    done_list+=("started PostgreSQL $version/main")
  fi
  wait_for "$PGHOST" "$PGPORT" PostgreSQL || exit 1
fi

if ! port_open "$REDIS_HOST" "$REDIS_PORT"; then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  if ! port_open "$REDIS_HOST" "$REDIS_PORT"; then
    echo "Redis is down: starting it"
    run mkdir -p /var/lib/redis /var/log/redis
    run redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    done_list+=("started Redis on port $REDIS_PORT")
  fi
  wait_for "$REDIS_HOST" "$REDIS_PORT" Redis || exit 1
fi

for what in "${done_list[@]}"; do echo "done: $what"; done
if [ "$DRY_RUN" = 1 ]; then echo "(dry run: nothing was changed)"; else echo "PostgreSQL and Redis are up."; fi
