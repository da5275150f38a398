#!/usr/bin/env bash
# demo.sh: what `make demo` runs. Shows dwfleet's main job on the emulators, with real processes:
#   1. dw-emulator --system fo and --system dv on free local ports, each in its own PostgreSQL
#      schema, F&O seeded with 3 companies, 8 currencies, 12 terms of payment, 12 customer groups
#      and DEMO_CUSTOMERS (50,000) Customers V3;
#   2. the fleet for the maps legal_entities, currencies, payment_terms, customer_groups and
#      customers_accounts: dw-capture --system fo and dv, dw-transform, dw-writer --target dv and fo;
#   3. `dwctl initial-sync --from fo` map by map in dependency order, the rows arriving in the
#      Dataverse emulator (dw-writer's counters, then a count through its Web API), with the rate;
#   4. a live change on each side (a customer renamed in F&O; a currency edited in Dataverse, or
#      the account with DEMO_DV_CAPTURE=all), timed until it is visible on the other side;
#   5. a summary: records synced, rates, time per live change, dead letters, consumer lag.
# Then it stops everything it started (DEMO_KEEP=1: leaves it running and prints how to stop).
#
# Usage: scripts/demo.sh [--check] [--no-build]      scripts/demo.sh --stop RUN_DIR
#   --check     exit non-zero unless every count matches, both live changes arrived, no dead
#               letter, no lag and each change was written once (no echo of the sync written back,
#               at most one of each live change; ctest's integration_demo runs it with
#               DEMO_CUSTOMERS=500)
#   --no-build  skip scripts/setup.sh and the build (use the binaries in DW_BUILD_DIR as they are)
#   --stop DIR  stop what a DEMO_KEEP=1 run left running (DIR is printed by that run)
# Environment: DEMO_CUSTOMERS (50000), DEMO_KEEP (0), DEMO_FO_PORT, DEMO_DV_PORT,
#   DEMO_CAPTURE_PORT (default: free ports), DEMO_PARTITIONS (3), DEMO_TIMEOUT (how long a step
#   may make no progress: 300 s, with --check 60 s), DEMO_DV_CAPTURE (maps followed by Dataverse
#   change tracking: all, or a list such as "currencies payment_terms"), DEMO_STATE_DIR
#   (.state/demo), DW_BUILD_DIR (build), DEMO_CLIENT_SECRET and DEMO_EVENT_SECRET (generated per
#   run when unset; passed to the processes through their environment, never printed).
# The services (Kafka, PostgreSQL) are started when they are not running, and stopped at the end
# only then. Maps, topics and consumer groups carry a per-run suffix; the workers' tables (ledger,
# checkpoints) and the emulators' tables live in per-run schemas: all dropped at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf '%s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

check=0 build=1 stop_dir=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --check) check=1 ;;
    --no-build) build=0 ;;
    --stop) [[ $# -ge 2 ]] || die "--stop needs the run directory"; stop_dir=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

build_dir=${DW_BUILD_DIR:-build}
[[ $build_dir = /* ]] || build_dir=$root/$build_dir
bin=$build_dir/bin
customers=${DEMO_CUSTOMERS:-50000}
keep=${DEMO_KEEP:-0}
partitions=${DEMO_PARTITIONS:-3}
wait_s=${DEMO_TIMEOUT:-}
state_dir=${DEMO_STATE_DIR:-$root/.state/demo}
maps=(legal_entities currencies payment_terms customer_groups customers_accounts)
# The maps dw-capture --system dv follows: every map that reads Dataverse (all), so the accounts
# the initial sync writes come back through change tracking and the F&O writer must drop each as
# an echo (--check fails when a writer writes anything more than the sync and the live changes).
dv_capture=${DEMO_DV_CAPTURE:-all}
[[ $dv_capture == all ]] && dv_capture="currencies payment_terms customer_groups customers_accounts"
[[ -n $wait_s ]] || { [[ $check -eq 1 ]] && wait_s=60 || wait_s=300; }
[[ $customers =~ ^[0-9]+$ && $customers -ge 10 ]] || die "DEMO_CUSTOMERS must be a number >= 10"

# ---------------------------------------------------------------------------------------------
# State of a run (RUN_DIR/state), so that --stop can end what a DEMO_KEEP=1 run left behind.
run_dir="" services_started=0
declare -A pid_of=() log_of=()
names=()
schemas=()
suffix="" groups=()

state_add() { [[ -n $run_dir ]] && printf '%s\n' "$*" >>"$run_dir/state"; return 0; }

# The run's Kafka state through dwctl (the broker from DW_KAFKA_BOOTSTRAP, as for the other dwctl
# calls): consumer lag, records per topic, the deletion of the run's topics and groups. Its
# diagnostics go to RUN_DIR/dwctl-kafka.log.
kctl() { "$bin/dwctl" "$@" 2>>"$run_dir/dwctl-kafka.log"; }

# Stop the processes (newest first), drop the schemas, topics and groups, stop the services when
# this run started them. Reads RUN_DIR/state so it works for --stop as well.
stop_run() {
  local dir=$1 line kind a b
  [[ -f $dir/state ]] || return 0
  local -a pids=() dropschemas=() groups_=()
  local sfx="" svc=0
  local bin=$bin # the dwctl of the run (recorded in the state), whatever DW_BUILD_DIR is now
  while read -r kind a b; do
    case $kind in
      pid) pids=("$b" "${pids[@]}") ;;
      schema) dropschemas+=("$a") ;;
      suffix) sfx=$a ;;
      bin) bin="$a${b:+ $b}" ;;
      group) groups_+=("$a") ;;
      services) svc=1 ;;
    esac
  done <"$dir/state"
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [[ -n $sfx ]]; then
    if [[ ${#groups_[@]} -gt 0 ]]; then
      run_dir=$dir kctl groups delete "${groups_[@]}" >/dev/null ||
        echo "demo: could not delete the consumer groups of this run: see $dir/dwctl-kafka.log" >&2
    fi
    run_dir=$dir kctl topics delete --match "_$sfx." >/dev/null ||
      echo "demo: could not delete the topics of this run (dw.*_$sfx.*): see $dir/dwctl-kafka.log" >&2
  fi
  local s
  for s in "${dropschemas[@]}"; do
    psql "$DW_PG_DSN" -qX -v ON_ERROR_STOP=1 -c "DROP SCHEMA IF EXISTS \"$s\" CASCADE" >/dev/null 2>&1 ||
      echo "demo: could not drop schema $s" >&2
  done
  rm -f "$dir"/*.auth "$dir/http.out"
  mv "$dir/state" "$dir/state.stopped"
  if [[ $svc -eq 1 ]]; then scripts/services.sh down || true; fi
}

if [[ -n $stop_dir ]]; then
  eval "$(scripts/services.sh env)"
  [[ -f $stop_dir/state ]] || die "$stop_dir: no running demo there"
  stop_run "$stop_dir"
  echo "demo: stopped $stop_dir"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
t_start=$EPOCHREALTIME
if [[ $build -eq 1 ]]; then
  say "== setup and build (into ${build_dir#"$root"/})"
  scripts/setup.sh
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build_dir" -j"$(nproc)" >"${TMPDIR:-/tmp}/dwfleet-demo-build.log" 2>&1 ||
    { tail -30 "${TMPDIR:-/tmp}/dwfleet-demo-build.log" >&2; die "the build failed"; }
fi
for b in dw-emulator dw-capture dw-transform dw-writer dwctl; do
  [[ -x $bin/$b ]] || die "$bin/$b is missing (build first, or set DW_BUILD_DIR)"
done

rid=$(printf '%04x%04x' $((RANDOM)) $(($$ & 0xffff)))
suffix=demo$rid
run_dir=$state_dir/$rid
mkdir -p "$run_dir"
chmod 700 "$run_dir"
: >"$run_dir/state"
state_add bin "$bin"

finished=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ $keep == 1 && $finished -eq 1 ]]; then
    say ""
    say "The fleet keeps running (DEMO_KEEP=1). Logs: ${run_dir#"$root"/}/*.log"
    say "Bearer tokens for curl (an hour): curl -H @${run_dir#"$root"/}/dv.auth ${base_of[dv]:-}accounts?\\\$top=3"
    say "Stop it with: scripts/demo.sh --stop ${run_dir#"$root"/}"
    exit "$rc"
  fi
  stop_run "$run_dir"
  if [[ $rc -eq 0 && $check -eq 1 ]]; then rm -rf "$run_dir"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT TERM

if ! scripts/services.sh status >/dev/null 2>&1; then
  services_started=1
  state_add services
fi
say "== services (Kafka, PostgreSQL)"
scripts/services.sh up
eval "$(scripts/services.sh env)"

# Secrets: from the environment or new per run; handed to the processes through their
# environment (never the command line), never printed. The emulators accept only this client.
gen_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
client_secret=${DEMO_CLIENT_SECRET:-$(gen_secret)}
event_secret=${DEMO_EVENT_SECRET:-$(gen_secret)}
admin_secret=$(gen_secret)

# ---------------------------------------------------------------------------------------------
fail() { # fail MESSAGE [NAME]: say which process failed and show the tail of its log
  echo "demo: FAILED: $1" >&2
  local n=${2:-}
  if [[ -n $n && -n ${log_of[$n]:-} ]]; then
    echo "---- last lines of ${log_of[$n]#"$root"/}" >&2
    grep -v ' counters: ' "${log_of[$n]}" | tail -n 20 >&2 || true
    grep ' counters: ' "${log_of[$n]}" | tail -n 1 >&2 || true
    echo "----" >&2
  fi
  echo "demo: logs in ${run_dir#"$root"/}/" >&2
  exit 1
}

alive() { # every process still running, else fail naming the one that exited
  local n st
  for n in "${names[@]}"; do
    if ! kill -0 "${pid_of[$n]}" 2>/dev/null; then
      st=0
      wait "${pid_of[$n]}" 2>/dev/null || st=$?
      fail "$n exited (status $st)" "$n"
    fi
  done
}

spawn() { # spawn NAME ENV... -- BINARY ARGS...
  local n=$1 envs=()
  shift
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  local b=$1
  shift
  log_of[$n]=$run_dir/$n.log
  env "${envs[@]}" "$bin/$b" "$@" >"${log_of[$n]}" 2>&1 &
  pid_of[$n]=$!
  names+=("$n")
  state_add pid "$n" "${pid_of[$n]}"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local want=${1:-0} p
  if [[ $want != 0 ]]; then
    port_free "$want" || die "port $want is in use"
    echo "$want"
    return
  fi
  # below the kernel's ephemeral range: no outgoing connection and no bind to port 0 (what the
  # tests running beside a demo do) can take the port between this pick and the process's bind
  local lo=32768 hi
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
  hi=$((lo > 12000 ? lo - 1 : 32767))
  for _ in $(seq 50); do
    p=$((10000 + RANDOM % (hi - 10000)))
    if port_free "$p"; then echo "$p"; return; fi
  done
  die "no free port found"
}

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s <= 0) s = 0.001; printf "%.0f", n / s }'; }

# HTTP against an emulator: http fo|dv METHOD PATH [BODY]: status in $http_status, the body in
# RUN_DIR/http.out (httpb prints it: page=$(httpb dv GET ...) runs in a subshell, so no status)
http_status=0
httpb() { http "$@" >/dev/null; [[ $http_status == 2* ]] || echo "HTTP $http_status" >>"$run_dir/http.log"; cat "$run_dir/http.out"; }
http() {
  local sys=$1 method=$2 path=$3 body=${4:-} out
  local base=${base_of[$sys]}
  local args=(-sS -o "$run_dir/http.out" -w '%{http_code}' -X "$method" -H "@$run_dir/$sys.auth"
    -H 'Accept: application/json' -H 'Prefer: odata.maxpagesize=5000')
  [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
  [[ $path == http* ]] || path=$base$path
  http_status=$(curl "${args[@]}" "$path" 2>>"$run_dir/http.log") || http_status=0
  cat "$run_dir/http.out"
}

token() { # token fo|dv: a bearer token for the client into RUN_DIR/<sys>.auth (mode 600)
  local sys=$1 resp tok
  resp=$(printf 'client_id=dwfleet&client_secret=%s&grant_type=client_credentials&scope=https%%3A%%2F%%2Forg.crm.dynamics.com%%2F.default' \
    "$client_secret" | curl -sS -X POST -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary @- "http://127.0.0.1:${port_of[$sys]}/demo/oauth2/v2.0/token" 2>>"$run_dir/http.log") || true
  tok=$(grep -o '"access_token": *"[^"]*"' <<<"$resp" | sed 's/.*"\([^"]*\)"$/\1/') || true
  [[ -n $tok ]] || fail "no token from the $sys emulator" "emulator-$sys"
  (umask 077; printf 'Authorization: Bearer %s\n' "$tok" >"$run_dir/$sys.auth")
}

json_str() { # json_str MEMBER: the first string value of MEMBER in the JSON on stdin
  grep -o "\"$1\": *\"[^\"]*\"" | head -n 1 | sed 's/.*: *"\([^"]*\)"$/\1/' || true
}

# Rows of a Dataverse entity set, through the Web API ($count stops at 5,000: page and count ids)
dv_count() {
  local set=$1 idcol=$2 url n=0 page next
  url="${set}?\$select=$idcol"
  while [[ -n $url ]]; do
    http dv GET "$url" >/dev/null
    [[ $http_status == 200 ]] || { echo -1; return; }
    page=$(<"$run_dir/http.out")
    n=$((n + $(grep -o "\"$idcol\":" <<<"$page" | wc -l)))
    next=$(json_str '@odata.nextLink' <<<"$page")
    url=$next
  done
  echo "$n"
}

# Rows of an F&O entity set in every company, with the map's F&O filter
fo_count() {
  local set=$1 filter=$2 out
  local args=(-sS -G -H "@$run_dir/fo.auth" --data-urlencode 'cross-company=true')
  [[ -n $filter ]] && args+=(--data-urlencode "\$filter=$filter")
  out=$(curl "${args[@]}" "${base_of[fo]}$set/\$count" 2>>"$run_dir/http.log") || true
  [[ $out =~ ^[0-9]+$ ]] || fail "F&O \$count of $set answered: ${out:0:200}" "emulator-fo"
  echo "$out"
}

# facts of a standard map, from `dwctl maps show` (sets, id column, F&O filter)
map_show() { "$bin/dwctl" maps show --maps "$root/schemas/maps" "$1"; }
map_fo_set() { map_show "$1" | sed -n 's/^F&O  *[^ ]* (\([^)]*\)).*/\1/p'; }
map_fo_filter() { map_show "$1" | sed -n 's/^fo filter  *//p' | sed 's/^(none)$//'; }
map_dv_set() { map_show "$1" | sed -n 's/^Dataverse  *[^ ]* (\([^)]*\)).*/\1/p'; }
map_dv_id() { map_show "$1" | sed -n 's/^Dataverse .*, id \([^ ,]*\).*/\1/p'; }

declare -A port_of=() base_of=()

# ---------------------------------------------------------------------------------------------
say ""
say "== 1. emulators (run $rid, logs in ${run_dir#"$root"/}/)"
port_of[fo]=$(pick_port "${DEMO_FO_PORT:-0}")
port_of[dv]=$(pick_port "${DEMO_DV_PORT:-0}")
port_of[cap]=$(pick_port "${DEMO_CAPTURE_PORT:-0}")
[[ ${port_of[fo]} != "${port_of[dv]}" && ${port_of[fo]} != "${port_of[cap]}" && ${port_of[dv]} != "${port_of[cap]}" ]] ||
  die "the F&O, Dataverse and capture ports must differ"
base_of[fo]=http://127.0.0.1:${port_of[fo]}/data/
base_of[dv]=http://127.0.0.1:${port_of[dv]}/api/data/v9.2/
fo_schema=demo_${rid}_fo dv_schema=demo_${rid}_dv dw_schema=demo_${rid}_dw
for s in "$fo_schema" "$dv_schema" "$dw_schema"; do state_add schema "$s"; done
# the workers' own tables (checkpoints, ledger, record ids, initial-sync runs) in this run's schema
psql "$DW_PG_DSN" -qX -v ON_ERROR_STOP=1 -c "CREATE SCHEMA \"$dw_schema\"" >/dev/null ||
  die "cannot create schema $dw_schema in $DW_PG_DSN"
case $DW_PG_DSN in
  *://*\?*) dw_dsn="$DW_PG_DSN&options=-csearch_path%3D$dw_schema" ;;
  *://*) dw_dsn="$DW_PG_DSN?options=-csearch_path%3D$dw_schema" ;;
  *) dw_dsn="$DW_PG_DSN options='-csearch_path=$dw_schema'" ;;
esac

emu_env=("DW_EMULATOR_CLIENTS=dwfleet:$client_secret" "DW_EMULATOR_ADMIN_SECRET=$admin_secret")
wait_http() { # wait_http NAME URL: until the URL answers at all
  for _ in $(seq 200); do
    alive
    curl -s -o /dev/null "$2" 2>/dev/null && return 0
    sleep 0.05
  done
  fail "$1 does not answer at $2" "$1"
}
start_emu() { # start_emu fo|dv [ARGS...]
  local sys=$1 schema
  shift
  [[ $sys == fo ]] && schema=$fo_schema || schema=$dv_schema
  spawn "emulator-$sys" "${emu_env[@]}" -- dw-emulator --system "$sys" --listen "127.0.0.1:${port_of[$sys]}" \
    --pg "$DW_PG_DSN" --schema "$schema" --metadata "$root/schemas/metadata" "$@"
  wait_http "emulator-$sys" "${base_of[$sys]}"
}
stop_proc() { # stop_proc NAME: a clean stop of one process (it leaves names)
  local n=$1 i
  kill -TERM "${pid_of[$n]}" 2>/dev/null || true
  wait "${pid_of[$n]}" 2>/dev/null || true
  local keepn=()
  for i in "${names[@]}"; do [[ $i == "$n" ]] || keepn+=("$i"); done
  names=("${keepn[@]}")
  sed -i "/^pid $n ${pid_of[$n]}\$/d" "$run_dir/state"
}

# F&O: started once to create its tables and row-version triggers, so the seeded rows carry row
# versions like real F&O rows; then seeded, then started for good with its data-event endpoint.
start_emu fo
stop_proc emulator-fo
t0=$(now)
seed_records="LegalEntities=3,Currencies=8,PaymentTerms=12,CustomerGroups=12,CustomersV3=$customers"
"$bin/dw-emulator" seed --system fo --pg "$DW_PG_DSN" --schema "$fo_schema" --metadata "$root/schemas/metadata" \
  --records "$seed_records" --quiet >"$run_dir/seed-fo.log" 2>&1 ||
  { tail -20 "$run_dir/seed-fo.log" >&2; fail "dw-emulator seed --system fo failed (log ${run_dir#"$root"/}/seed-fo.log)"; }
# The legal entities' ids go to lower case (USMF -> usmf, as their companies' dataAreaId): the
# accounts bind their company as cdm_companies(cdm_companycode='usmf'), and the Dataverse emulator
# compares alternate keys case-sensitively where Dataverse does not (docs/emulators.md), so a
# company written as "USMF" would not be found.
psql "$DW_PG_DSN" -qX -v ON_ERROR_STOP=1 >"$run_dir/seed-fix.log" 2>&1 <<SQL ||
UPDATE "$fo_schema"."LegalEntity" SET "LegalEntityId" = lower("LegalEntityId") WHERE "LegalEntityId" <> lower("LegalEntityId");
SQL
  { cat "$run_dir/seed-fix.log" >&2; fail "could not write the seeded legal entities' ids in lower case"; }
say "F&O seeded in $(elapsed "$t0") s: $seed_records"

# dw-capture --system fo first: the F&O emulator pushes its data events to it
maps_dir=$run_dir/maps
mkdir -p "$maps_dir"
for m in "${maps[@]}"; do
  text=$(<"$root/schemas/maps/$m.json")
  for d in "${maps[@]}"; do text=${text//\"$d\"/\"${d}_$suffix\"}; done
  printf '%s\n' "$text" >"$maps_dir/${m}_$suffix.json"
done
state_add suffix "$suffix"
"$bin/dwctl" maps validate "$maps_dir" >"$run_dir/maps-validate.log" 2>&1 ||
  { cat "$run_dir/maps-validate.log" >&2; fail "the demo's maps do not validate"; }

common=(-X "maps.dir=$maps_dir" -X "topics.partitions=$partitions")
wenv=("DW_PG_DSN=$dw_dsn" "DW_FO_CLIENT_SECRET=$client_secret" "DW_DV_CLIENT_SECRET=$client_secret"
  "DW_CAPTURE_FO_SECRET=$event_secret")
fo_conn=(-X "fo.url=http://127.0.0.1:${port_of[fo]}" -X "fo.token_url=http://127.0.0.1:${port_of[fo]}/demo/oauth2/v2.0/token"
  -X fo.client_id=dwfleet)
dv_conn=(-X "dv.url=http://127.0.0.1:${port_of[dv]}" -X "dv.token_url=http://127.0.0.1:${port_of[dv]}/demo/oauth2/v2.0/token"
  -X dv.client_id=dwfleet)

spawn capture-fo "${wenv[@]}" -- dw-capture --system fo "${common[@]}" -X "capture.listen=127.0.0.1:${port_of[cap]}" \
  -X capture.fo_auth=bearer -X "capture.component=dw-capture-$suffix"
wait_http capture-fo "http://127.0.0.1:${port_of[cap]}/healthz"

start_emu fo -X emulator.fo.company=usmf
# the event endpoint and its secret are set after the seed: its rows are no data events
stop_proc emulator-fo
emu_env+=("DW_EMULATOR_FO_EVENT_ENDPOINTS=http://127.0.0.1:${port_of[cap]}/events"
  "DW_EMULATOR_FO_EVENT_AUTH_HEADER=Authorization: Bearer $event_secret")
start_emu fo -X emulator.fo.company=usmf -X emulator.fo.event_retry_initial_ms=100 -X emulator.fo.event_retry_max_ms=1000
start_emu dv
say "F&O OData      ${base_of[fo]}   (schema $fo_schema)"
say "Dataverse API  ${base_of[dv]}   (schema $dv_schema)"
token fo
token dv

# ---------------------------------------------------------------------------------------------
say ""
say "== 2. the fleet: ${maps[*]} (topics dw.<map>_$suffix.*)"
groups=("dw-transform-$suffix" "dw-writer-dv-$suffix" "dw-writer-fo-$suffix")
for g in "${groups[@]}"; do state_add group "$g"; done
cap_dv_maps=""
for m in $dv_capture; do cap_dv_maps+="${cap_dv_maps:+,}${m}_$suffix"; done
say "  Dataverse change tracking for: $dv_capture"
spawn capture-dv "${wenv[@]}" -- dw-capture --system dv "${common[@]}" "${dv_conn[@]}" -X "capture.maps=$cap_dv_maps" \
  -X "capture.component=dw-capture-$suffix" -X capture.poll_interval_ms=500 -X capture.poll_max_interval_ms=1000 \
  -X capture.request_budget_per_min=0
spawn transform "${wenv[@]}" -- dw-transform "${common[@]}" -X "transform.group_id=${groups[0]}" \
  -X "transform.instance_id=${groups[0]}"
spawn writer-dv "${wenv[@]}" -- dw-writer --target dv "${common[@]}" "${dv_conn[@]}" \
  -X "writer.group_id=${groups[1]}" -X "writer.instance_id=${groups[1]}" -X writer.stats_interval_ms=1000
spawn writer-fo "${wenv[@]}" -- dw-writer --target fo "${common[@]}" "${fo_conn[@]}" \
  -X "writer.group_id=${groups[2]}" -X "writer.instance_id=${groups[2]}" -X writer.stats_interval_ms=1000
for n in "${names[@]}"; do printf '  %-12s pid %-7s log %s\n' "$n" "${pid_of[$n]}" "${log_of[$n]#"$root"/}"; done
# the consumers have joined their groups when each has logged its first assignment
for n in transform writer-dv writer-fo; do
  ok=0
  for _ in $(seq $((wait_s * 10))); do
    alive
    if grep -qiE 'assign' "${log_of[$n]}"; then ok=1; break; fi
    sleep 0.1
  done
  [[ $ok -eq 1 ]] || fail "$n did not join its consumer group within $wait_s s" "$n"
done
say "all five workers running"

# ---------------------------------------------------------------------------------------------
say ""
say "== 3. initial sync from F&O, in dependency order"
tty=0
[[ -t 1 ]] && tty=1
total_synced=0 sync_start=$(now) sync_busy=0
declare -A expect_of=() got_of=() secs_of=()
counter() { # counter PROCESS NAME: the value in the process's last counters line (0 before one)
  local v
  v=$(grep -o " counters: .*" "${log_of[$1]}" | tail -n1 | grep -o " $2=[0-9]*" | sed 's/.*=//') || true
  echo "${v:-0}"
}
written() { # the records a writer has written so far (its last counters line)
  local v
  v=$(grep -o ' counters: consumed=[0-9]* written=[0-9]*' "${log_of[$1]}" | tail -n1 | sed 's/.*written=//') || true
  echo "${v:-0}"
}
for m in "${maps[@]}"; do
  fo_set=$(map_fo_set "$m") dv_set=$(map_dv_set "$m") dv_id=$(map_dv_id "$m")
  [[ -n $fo_set && -n $dv_set && -n $dv_id ]] || fail "cannot read map $m with dwctl maps show"
  expect=$(fo_count "$fo_set" "$(map_fo_filter "$m")")
  expect_of[$m]=$expect
  base=$(written writer-dv)
  t0=$(now)
  prog=(--no-progress)
  [[ $tty -eq 1 ]] && prog=()
  env "${wenv[@]}" "$bin/dwctl" initial-sync --map "${m}_$suffix" --from fo "${common[@]}" "${fo_conn[@]}" \
    "${prog[@]}" >"$run_dir/initial-sync-$m.out" 2> >(tee "$run_dir/initial-sync-$m.log" >&2) ||
    { log_of[initial-sync]=$run_dir/initial-sync-$m.log; fail "dwctl initial-sync --map $m failed" initial-sync; }
  t_pub=$(elapsed "$t0")
  # the rows arrive in Dataverse: progress from dw-writer's counters (free), then counted through
  # the Web API (paging through the table: not done every half second, it would slow the writer)
  last=-1 n=0 next_print=0 next_count=$(($(date +%s) + 10)) t_done="" t_count=""
  deadline=$(($(date +%s) + wait_s))
  while :; do
    alive
    w=$(($(written writer-dv) - base))
    dl=$(counter writer-dv dead_lettered)
    [[ $dl -eq 0 ]] || fail "$m: dw-writer --target dv dead-lettered $dl record(s): the counts cannot match" writer-dv
    if [[ -z $t_done && $w -ge $expect ]]; then t_done=$(elapsed "$t0") next_count=0; fi
    if [[ $(date +%s) -ge $next_count ]]; then
      tc=$(now)
      n=$(dv_count "$dv_set" "$dv_id")
      t_count=$(elapsed "$tc")
      [[ -n $t_done ]] && next_count=$(($(date +%s) + 2)) || next_count=$(($(date +%s) + 10))
      if [[ $n -ge $expect ]]; then break; fi
    fi
    [[ $w -gt $n ]] && shown=$w || shown=$n
    if [[ $shown -ne $last ]]; then deadline=$(($(date +%s) + wait_s)); fi
    last=$shown
    s=$(elapsed "$t0")
    if [[ $tty -eq 1 ]]; then
      printf '\r  %-20s %9s / %-9s written  %6s rows/s ' "$m" "$shown" "$expect" "$(rate "$shown" "$s")"
    elif [[ $(date +%s) -ge $next_print ]]; then
      printf '  %-20s %9s / %-9s written  %6s rows/s\n' "$m" "$shown" "$expect" "$(rate "$shown" "$s")"
      next_print=$(($(date +%s) + 5))
    fi
    [[ $(date +%s) -lt $deadline ]] || fail "$m: $n of $expect rows in Dataverse, no progress for $wait_s s" writer-dv
    sleep 0.25
  done
  # the time until dw-writer had written them all (the Web API count that confirms it, paging
  # through the table, is not part of it)
  s=${t_done:-$(elapsed "$t0")}
  got_of[$m]=$n secs_of[$m]=$s
  total_synced=$((total_synced + n))
  sync_busy=$(awk -v a="$sync_busy" -v b="$s" 'BEGIN { printf "%.1f", a + b }')
  [[ $tty -eq 1 ]] && printf '\r'
  printf '  %-20s %9s / %-9s in Dataverse  in %5s s  %6s rows/s  (read from F&O %s s; Web API count %s, %s s)\n' \
    "$m" "$n" "$expect" "$s" "$(rate "$n" "$s")" "$t_pub" "$n" "$t_count"
done
sync_secs=$(elapsed "$sync_start")
say "initial sync: $total_synced records in $sync_busy s, $(rate "$total_synced" "$sync_busy") records/s F&O -> Kafka -> Dataverse ($sync_secs s with the counting)"

# ---------------------------------------------------------------------------------------------
say ""
say "== 4. live changes"
# an organization customer, and its account in Dataverse
http fo GET "CustomersV3?\$filter=PartyType%20eq%20'Organization'&\$top=1&\$select=dataAreaId,CustomerAccount,OrganizationName" >/dev/null
row=$(<"$run_dir/http.out")
cust=$(json_str CustomerAccount <<<"$row") comp=$(json_str dataAreaId <<<"$row") old=$(json_str OrganizationName <<<"$row")
[[ -n $cust && -n $comp ]] || fail "no organization customer in F&O (HTTP $http_status)" emulator-fo
fo_key="CustomersV3(dataAreaId='$comp',CustomerAccount='$cust')"
# its account in Dataverse (found once by account number; then read by id, which is fast)
http dv GET "accounts?\$filter=accountnumber%20eq%20'$cust'&\$select=accountid,name" >/dev/null
acct=$(json_str accountid <"$run_dir/http.out")
[[ -n $acct ]] || fail "customer $cust has no account in Dataverse (HTTP $http_status)" writer-dv
new_fo="Renamed in F&O $(date +%H:%M:%S)"
say "F&O:  rename customer $comp/$cust \"$old\" -> \"$new_fo\""
t0=$(now)
http fo PATCH "$fo_key?cross-company=true" "{\"OrganizationName\":\"$new_fo\"}" >/dev/null
[[ $http_status == 204 || $http_status == 200 ]] || fail "PATCH $fo_key answered $http_status" emulator-fo
ok=0
deadline=$(($(date +%s) + wait_s))
while [[ $(date +%s) -lt $deadline ]]; do
  alive
  if httpb dv GET "accounts($acct)?\$select=name" | grep -qE "\"name\": *\"$new_fo\""; then ok=1; break; fi
  sleep 0.1
done
live_fo_dv=$(elapsed "$t0")
[[ $ok -eq 1 ]] || fail "the F&O rename did not arrive in Dataverse within $wait_s s" writer-dv
say "      arrived in Dataverse (account $acct) after $live_fo_dv s"

new_dv="Edited in Dataverse $(date +%H:%M:%S)"
if [[ " $dv_capture " == *" customers_accounts "* ]]; then
  say "Dataverse: edit account $acct name -> \"$new_dv\""
  dv_path="accounts($acct)" dv_body="{\"name\":\"$new_dv\"}"
  fo_path="$fo_key?cross-company=true&\$select=OrganizationName" fo_member=OrganizationName fo_what="$comp/$cust"
else
  # accounts are not captured from Dataverse by default (see DEMO_DV_CAPTURE): edit a currency
  http dv GET "transactioncurrencies?\$select=isocurrencycode,currencyname&\$top=1" >/dev/null
  code=$(json_str isocurrencycode <"$run_dir/http.out") oldc=$(json_str currencyname <"$run_dir/http.out")
  [[ -n $code ]] || fail "no currency in Dataverse (HTTP $http_status)" emulator-dv
  say "Dataverse: edit currency $code name \"$oldc\" -> \"$new_dv\""
  dv_path="transactioncurrencies(isocurrencycode='$code')" dv_body="{\"currencyname\":\"$new_dv\"}"
  fo_path="Currencies(CurrencyCode='$code')?\$select=Name" fo_member=Name fo_what="currency $code"
fi
t0=$(now)
http dv PATCH "$dv_path" "$dv_body" >/dev/null
[[ $http_status == 204 || $http_status == 200 ]] || fail "PATCH $dv_path answered $http_status" emulator-dv
ok=0
deadline=$(($(date +%s) + wait_s))
while [[ $(date +%s) -lt $deadline ]]; do
  alive
  if httpb fo GET "$fo_path" | grep -qE "\"$fo_member\": *\"$new_dv\""; then ok=1; break; fi
  sleep 0.1
done
live_dv_fo=$(elapsed "$t0")
[[ $ok -eq 1 ]] || fail "the Dataverse edit did not arrive in F&O within $wait_s s" writer-fo
say "      arrived in F&O ($fo_what) after $live_dv_fo s"

# ---------------------------------------------------------------------------------------------
say ""
say "== 5. summary"
dlq_topics=()
for m in "${maps[@]}"; do dlq_topics+=("dw.${m}_$suffix.dlq"); done
dead=0
lag_line="" lag_total=0
# lag: the groups catch up once the echoes of the writes have gone round (waits up to 30 s for 0);
# dead letters: the records in the maps' dead-letter topics
out=$(kctl groups lag --wait 30 "${groups[@]}") ||
  fail "could not read the consumer groups' lag (${run_dir#"$root"/}/dwctl-kafka.log)"
while read -r g l; do
  lag_line+="${g%-"$suffix"}=$l  "
  [[ $l -ge 0 ]] && lag_total=$((lag_total + l))
done <<<"$out"
out=$(kctl topics count "${dlq_topics[@]}") ||
  fail "could not count the records of the dead-letter topics (${run_dir#"$root"/}/dwctl-kafka.log)"
while read -r t c; do dead=$((dead + c)); done <<<"$out"
alive
counters() { grep -o 'counters: .*' "$1" | tail -n1 | grep -oE '(written|echo_dropped|stale_dropped|dead_lettered)=[0-9]+' | tr '\n' ' '; }

mismatch=0
printf '  %-20s %10s %10s %10s %9s\n' map "F&O rows" "Dataverse" "seconds" "rows/s"
for m in "${maps[@]}"; do
  flag=""
  [[ ${got_of[$m]} -eq ${expect_of[$m]} ]] || { flag="  MISMATCH"; mismatch=1; }
  printf '  %-20s %10s %10s %10s %9s%s\n' "$m" "${expect_of[$m]}" "${got_of[$m]}" "${secs_of[$m]}" \
    "$(rate "${got_of[$m]}" "${secs_of[$m]}")" "$flag"
done
say "  records synced      $total_synced in $sync_busy s ($(rate "$total_synced" "$sync_busy") records/s, F&O -> Kafka -> Dataverse)"
say "  live change F&O -> Dataverse   $live_fo_dv s"
say "  live change Dataverse -> F&O   $live_dv_fo s"
say "  dead letters        $dead (${#dlq_topics[@]} topics dw.<map>_$suffix.dlq)"
say "  consumer lag        $lag_line"
say "  dw-writer dv        $(counters "${log_of[writer-dv]}")"
say "  dw-writer fo        $(counters "${log_of[writer-fo]}")"
say "  logs                ${run_dir#"$root"/}/"
say "  total time          $(elapsed "$t_start") s"
if [[ $keep == 1 ]]; then
  say "  stop                scripts/demo.sh --stop ${run_dir#"$root"/}   (DEMO_KEEP=1: everything keeps running)"
else
  say "  stop                stopping everything now (DEMO_KEEP=1 leaves it running; Ctrl-C during a run stops it all)"
fi

if [[ $check -eq 1 ]]; then
  problems=()
  [[ $mismatch -eq 0 ]] || problems+=("a map's count differs")
  [[ $dead -eq 0 ]] || problems+=("$dead dead letters")
  [[ $lag_total -eq 0 ]] || problems+=("consumer lag $lag_total")
  # each change written once: the Dataverse writer wrote the synced records and the F&O rename,
  # the F&O writer the Dataverse edit; every echo of the sync dropped. One write more per live
  # change is allowed: a live change's echo that comes back before the writer that wrote it has
  # committed its ledger transaction is written once more, with the content the other side
  # already holds (docs/writer.md, "Echoes inside the ledger window"); a second round is ping-pong
  sleep 1.2 # the writers print their counters every second: read lines written after the lag was 0
  w_dv=$(written writer-dv) w_fo=$(written writer-fo)
  [[ $w_dv -ge $((total_synced + 1)) && $w_dv -le $((total_synced + 2)) ]] ||
    problems+=("dw-writer dv wrote $w_dv records, not $((total_synced + 1)) (the sync and one live change, at most one echo more)")
  [[ $w_fo -ge 1 && $w_fo -le 2 ]] ||
    problems+=("dw-writer fo wrote $w_fo records, not 1 (the live change, at most one echo more)")
  if [[ ${#problems[@]} -gt 0 ]]; then
    echo "demo: CHECK FAILED: ${problems[*]}" >&2
    exit 1
  fi
  say "demo: check passed"
fi
finished=1
