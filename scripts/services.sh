#!/usr/bin/env bash
# services.sh: dwfleet's local services for development and tests.
#   up      start a private PostgreSQL cluster and a single-node Apache Kafka (KRaft) broker;
#           idempotent; returns once both answer (PostgreSQL accepts connections, the broker
#           answers metadata requests)
#   down    stop exactly what `up` started
#   status  say what runs
#   env     print DW_KAFKA_BOOTSTRAP=... and DW_PG_DSN=... lines (and an export line) for eval
# State lives under .state/ (DW_SERVICES_STATE_DIR), the Kafka jars under .cache/ (DW_SERVICES_CACHE_DIR); both are
# git-ignored. Ports: PostgreSQL 55432 (DW_SERVICES_PG_PORT), Kafka 19092 and controller 19093
# (DW_SERVICES_KAFKA_PORT, DW_SERVICES_KAFKA_CONTROLLER_PORT).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${DW_SERVICES_STATE_DIR:-$root/.state}
cache=${DW_SERVICES_CACHE_DIR:-$root/.cache}
pg_port=${DW_SERVICES_PG_PORT:-55432}
kafka_port=${DW_SERVICES_KAFKA_PORT:-19092}
ctrl_port=${DW_SERVICES_KAFKA_CONTROLLER_PORT:-19093}
kafka_version=3.9.1
kafka_heap=${DW_SERVICES_KAFKA_HEAP:-512m}

pg_data=$state/pg/data
pg_sock=$state/pg/run
pg_log=$state/pg/postgresql.log
kafka_dir=$state/kafka
kafka_lib=$cache/kafka-$kafka_version/lib
kafka_pidfile=$kafka_dir/kafka.pid
kafka_log=$kafka_dir/kafka.log

die() { echo "services: $*" >&2; exit 1; }
say() { echo "services: $*" >&2; }

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$d" && -x "$d/initdb" ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/setup.sh)"
  echo "$d"
}

# PostgreSQL refuses to run as root: as root, the cluster belongs to the 'postgres' system user.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user (install postgresql)"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_running() { [[ -f $pg_data/postmaster.pid ]] && as_pg "$(pg_bin)/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; }

pg_up() {
  local bin; bin=$(pg_bin)
  mkdir -p "$state/pg" "$pg_sock"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$state/pg" "$pg_sock"
    # The postgres user must be able to reach the state folder: grant search (x, not read) on
    # the parent folders that lack it, saying so.
    if ! as_pg test -w "$state/pg"; then
      local d=$state/pg
      while [[ $d != / ]]; do
        d=$(dirname "$d")
        if ! as_pg test -x "$d"; then
          say "granting search permission (o+x) on $d so that user postgres can reach $state/pg"
          chmod o+x "$d"
        fi
      done
      as_pg test -w "$state/pg" || die "user postgres cannot write $state/pg; set DW_SERVICES_STATE_DIR to a folder it can reach"
    fi
  fi
  if [[ ! -f $pg_data/PG_VERSION ]]; then
    say "initialising PostgreSQL cluster in $pg_data"
    as_pg "$bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$state/pg/initdb.log" 2>&1 \
      || { cat "$state/pg/initdb.log" >&2; die "initdb failed"; }
    cat >>"$pg_data/postgresql.conf" <<CONF
# dwfleet local services
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$pg_sock'
max_connections = 200
fsync = on
shared_buffers = 128MB
CONF
  fi
  if pg_running; then return 0; fi
  as_pg "$bin/pg_ctl" -D "$pg_data" -l "$pg_log" -w -t 60 start >/dev/null \
    || { tail -20 "$pg_log" >&2 || true; die "PostgreSQL did not start (log: $pg_log)"; }
  local psql=(as_pg "$bin/psql" -h "$pg_sock" -p "$pg_port" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1)
  if [[ -z $("${psql[@]}" -c "select 1 from pg_roles where rolname='dwfleet'") ]]; then
    "${psql[@]}" -c "create role dwfleet login createdb" >/dev/null
  fi
  if [[ -z $("${psql[@]}" -c "select 1 from pg_database where datname='dwfleet'") ]]; then
    "${psql[@]}" -c "create database dwfleet owner dwfleet" >/dev/null
  fi
}

pg_down() {
  if pg_running; then
    as_pg "$(pg_bin)/pg_ctl" -D "$pg_data" -m fast -w -t 60 stop >/dev/null
  fi
}

kafka_jars() {
  [[ -f $kafka_lib/.complete ]] && return 0
  command -v mvn >/dev/null || die "maven (mvn) not found: run scripts/setup.sh"
  say "fetching Apache Kafka $kafka_version jars with Maven into $kafka_lib"
  rm -rf "$kafka_lib"; mkdir -p "$kafka_lib"
  local log=$cache/maven-fetch.log
  if ! mvn -B -q -f "$root/scripts/kafka/pom.xml" -Dkafka.version="$kafka_version" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$kafka_lib" >"$log" 2>&1; then
    tail -30 "$log" >&2
    die "could not fetch org.apache.kafka:kafka_2.13:$kafka_version with Maven (log: $log)"
  fi
  ls "$kafka_lib"/kafka_2.13-"$kafka_version".jar >/dev/null 2>&1 || die "Maven finished but kafka_2.13-$kafka_version.jar is missing in $kafka_lib"
  touch "$kafka_lib/.complete"
}

kafka_running() { [[ -f $kafka_pidfile ]] && kill -0 "$(cat "$kafka_pidfile")" 2>/dev/null; }

kafka_answers() { kcat -b "127.0.0.1:$kafka_port" -L -m 3 >/dev/null 2>&1; }

kafka_up() {
  command -v java >/dev/null || die "java not found: run scripts/setup.sh"
  command -v kcat >/dev/null || die "kcat not found: run scripts/setup.sh"
  kafka_jars
  mkdir -p "$kafka_dir/data"
  cat >"$kafka_dir/server.properties" <<PROPS
# written by scripts/services.sh: one KRaft node, broker and controller
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$ctrl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$kafka_dir/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPS
  cat >"$kafka_dir/log4j.properties" <<'PROPS'
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.ConsoleAppender
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.logger.state.change.logger=WARN
PROPS
  local jvm=(java "-Xmx$kafka_heap" "-Xms$kafka_heap" -XX:+UseG1GC -Djava.awt.headless=true
             "-Dlog4j.configuration=file:$kafka_dir/log4j.properties" -cp "$kafka_lib/*")
  if [[ ! -f $kafka_dir/data/meta.properties ]]; then
    local id; id=$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>>"$kafka_log")
    "${jvm[@]}" kafka.tools.StorageTool format -t "$id" -c "$kafka_dir/server.properties" >>"$kafka_log" 2>&1 \
      || { tail -20 "$kafka_log" >&2; die "formatting Kafka storage failed"; }
  fi
  if ! kafka_running; then
    if kafka_answers; then
      die "something else already answers on 127.0.0.1:$kafka_port (set DW_SERVICES_KAFKA_PORT)"
    fi
    nohup "${jvm[@]}" kafka.Kafka "$kafka_dir/server.properties" >>"$kafka_log" 2>&1 &
    echo $! >"$kafka_pidfile"
  fi
  local i
  for i in $(seq 1 120); do
    kafka_answers && return 0
    kafka_running || { tail -30 "$kafka_log" >&2; die "the Kafka broker exited during start (log: $kafka_log)"; }
    sleep 0.5
  done
  tail -30 "$kafka_log" >&2
  die "the Kafka broker did not answer metadata requests within 60 s (log: $kafka_log)"
}

kafka_down() {
  kafka_running || { rm -f "$kafka_pidfile"; return 0; }
  local pid; pid=$(cat "$kafka_pidfile")
  kill "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$kafka_pidfile"; return 0; }
    sleep 0.5
  done
  say "Kafka did not stop within 30 s: killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$kafka_pidfile"
}

print_env() {
  echo "DW_KAFKA_BOOTSTRAP=127.0.0.1:$kafka_port"
  echo "DW_PG_DSN=postgresql://dwfleet@127.0.0.1:$pg_port/dwfleet"
  # so that eval "$(scripts/services.sh env)" hands them to the programs started afterwards
  echo "export DW_KAFKA_BOOTSTRAP DW_PG_DSN"
}

case "${1:-}" in
  up)
    pg_up
    kafka_up
    say "up: PostgreSQL on 127.0.0.1:$pg_port (socket $pg_sock), Kafka $kafka_version on 127.0.0.1:$kafka_port"
    ;;
  down)
    kafka_down
    pg_down
    ;;
  status)
    rc=0
    if pg_running; then echo "postgresql: running on 127.0.0.1:$pg_port"; else echo "postgresql: stopped"; rc=3; fi
    if kafka_running && kafka_answers; then echo "kafka: running on 127.0.0.1:$kafka_port (pid $(cat "$kafka_pidfile"))"
    elif kafka_running; then echo "kafka: starting or not answering (pid $(cat "$kafka_pidfile"))"; rc=3
    else echo "kafka: stopped"; rc=3; fi
    exit $rc
    ;;
  env)
    print_env
    ;;
  *)
    echo "usage: scripts/services.sh up|down|status|env" >&2
    exit 2
    ;;
esac
