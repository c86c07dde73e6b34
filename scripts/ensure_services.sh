#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer before the tests run.
# Starts them when they are installed but down; otherwise says how to get them.
set -u
PGHOST=${PGHOST:-127.0.0.1}; PGPORT=${PGPORT:-5432}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}; REDIS_PORT=${REDIS_PORT:-6379}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() {  # host port name
  for _ in $(seq 1 30); do port_open "$1" "$2" && return 0; sleep 1; done
  echo "error: $3 did not come up on $1:$2" >&2; return 1
}

if ! port_open "$PGHOST" "$PGPORT"; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "PostgreSQL is down: starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_for "$PGHOST" "$PGPORT" PostgreSQL || exit 1
  else
    echo "error: PostgreSQL is not answering on $PGHOST:$PGPORT and is not installed here." >&2
    echo "  Install it (Debian: apt-get install postgresql, trust auth for user postgres on 127.0.0.1)," >&2
    echo "  or point DATABASE_URL at a running server (postgres://USER@HOST:PORT/rlhf_studio)." >&2
    exit 1
  fi
fi

if ! port_open "$REDIS_HOST" "$REDIS_PORT"; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "Redis is down: starting it"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for "$REDIS_HOST" "$REDIS_PORT" Redis || exit 1
  else
    echo "error: Redis is not answering on $REDIS_HOST:$REDIS_PORT and is not installed here." >&2
    echo "  Install it (Debian: apt-get install redis-server) or set REDIS_URL to a running server." >&2
    exit 1
  fi
fi
echo "PostgreSQL and Redis are up."
