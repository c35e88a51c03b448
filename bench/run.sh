#!/usr/bin/env bash
# bench/run.sh: contactsync's performance, measured side by side with
# baselines (see docs/performance.md).
#
#   bench/run.sh                 # default sizes (10-15 minutes on 2 cores)
#   QUICK=1 bench/run.sh         # small sizes, under a minute
#   N_LDAP_BIG=0 bench/run.sh    # without the 1,000,000-entry LDAP cases (about 5 minutes)
#
# Sizes and switches (environment):
#   N_LDAP=100000      entries of the LDAP full / unchanged / incremental cases
#   N_LDAP_BIG=1000000 entries of the big LDAP cases (0: skipped)
#   N_CSV=1000000      rows of the CRM CSV drop
#   N_API=100000       creates against the simulator without latency
#   N_RATE=20000       creates against the simulator with 50 ms latency
#   RATE=20            requests_per_second configured for the latency case
#   CHANGES=100        changes of the incremental case
#   RECONCILE_MAX=200000  largest LDAP case that is reconciled before its incremental runs
#   ROUNDS=3           rounds; each round runs contactsync and its baseline
#   ROUNDS_SMALL=3*ROUNDS  rounds of the N_LDAP full and unchanged cases,
#                      which take about a second each: on a host whose speed
#                      drifts from one second to the next, five of them
#                      gave medians 20% apart from run to run
#   CASES="ldap csv api rate"   which case groups to run
#   WORK=dir           where data, servers and results go (default: a new /tmp dir, kept)
#   CS_ENV="..."       environment for contactsync, e.g. CS_ENV="GOMEMLIMIT=250MiB GOGC=200"
#   KEEP=1             keep each case's data and state files (several GB at default sizes)
#   SETTLE=0           do not run `sync` before each timed command
#   LDAP_UUIDS=random  give the LDAP entries entryUUIDs in no particular order
#                      (default "server": slapadd's, ascending in load order)
#
# Each case alternates contactsync and its baseline within a round (the
# order flips every round), so that a change in the machine's load hits both.
# Times are wall-clock seconds and peak RSS from /usr/bin/time -v (GNU time).
# Everything listens on 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ "${QUICK:-0}" == 1 ]]; then
	: "${N_LDAP:=10000}" "${N_LDAP_BIG:=0}" "${N_CSV:=100000}" "${N_API:=10000}" "${N_RATE:=4000}"
fi
N_LDAP=${N_LDAP:-100000}
N_LDAP_BIG=${N_LDAP_BIG:-1000000}
N_CSV=${N_CSV:-1000000}
N_API=${N_API:-100000}
N_RATE=${N_RATE:-20000}
RATE=${RATE:-20}
CHANGES=${CHANGES:-100}
ROUNDS=${ROUNDS:-3}
ROUNDS_SMALL=${ROUNDS_SMALL:-$((ROUNDS * 3))}
CASES=${CASES:-ldap csv api rate}
LDAP_UUIDS=${LDAP_UUIDS:-server}
UUID_TAG= # names the LDAP cases of a run with random UUIDs apart
[[ "$LDAP_UUIDS" == server ]] || UUID_TAG=-$LDAP_UUIDS
WORK=${WORK:-$(mktemp -d /tmp/contactsync-bench.XXXXXX)}
mkdir -p "$WORK/bin"
RESULTS=$WORK/results.tsv
: >"$RESULTS"
SUFFIX=dc=example,dc=org
BASE=ou=suppliers,$SUFFIX
READER=cn=reader,ou=service,$SUFFIX
PIDS=()

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT

[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is needed: apt-get install time"
command -v ldapsearch >/dev/null || die "ldapsearch is needed: apt-get install ldap-utils"
command -v python3 >/dev/null || die "python3 is needed for the CSV baseline"
SLAPD=$(command -v slapd || echo /usr/sbin/slapd)
SLAPADD=$(dirname "$SLAPD")/slapadd
[[ -x $SLAPD ]] || die "slapd is needed: apt-get install slapd"

log "building into $WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/contactsync" ./cmd/contactsync &&
	go build -o "$WORK/bin/webex-simulator" ./cmd/webex-simulator &&
	go build -o "$WORK/bin/gen" ./bench/gen)
CS=$WORK/bin/contactsync
if [[ -n "${CS_ENV:-}" ]]; then
	# shellcheck disable=SC2206 # word splitting is the point
	CS=(env $CS_ENV "$CS")
else
	CS=("$CS")
fi
GEN=$WORK/bin/gen
printf 'bench-reader-secret' >"$WORK/reader.password"
chmod 600 "$WORK/reader.password"

# measure CASE WHO ROUND CMD...: runs CMD under GNU time and appends a line
# to the results. Output goes to WORK/logs.
measure() {
	local c=$1 who=$2 round=$3
	shift 3
	mkdir -p "$WORK/logs"
	local out="$WORK/logs/$c-$who-$round" tf
	# A baseline's output (an LDIF dump: 390 MB at 1,000,000 entries) goes
	# to one file per case, each round replacing the last. Kept round after
	# round, those files held gigabytes of page cache, and on this VM
	# memory the guest has not touched yet is slow to touch the first time:
	# the next first import, which writes 1.5 GB, paid 1-2.5 s more system
	# time for it (docs/performance-notes.md, ninth round).
	local stdout="$out.out"
	[[ "$who" != baseline ]] || stdout="$WORK/logs/$c-$who.out"
	tf=$(mktemp)
	# The previous command's files (a first import writes about 1 GB, an
	# LDIF dump 350 MB at 1,000,000 entries) are still being written back;
	# whoever fsyncs next would wait for them. Each command starts from
	# a disk with nothing pending.
	[[ "${SETTLE:-1}" == 0 ]] || sync
	if ! /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$stdout" 2>"$out.err"; then
		# Exit 4 (rejected records) still counts; anything else is a failure.
		local rc
		rc=$(sed -n 's/^Command exited with non-zero status \([0-9]*\)$/\1/p' "$tf")
		if [[ "$rc" != 4 ]]; then
			cat "$out.err" >&2
			die "$c/$who round $round failed (status ${rc:-?}), see $out.err"
		fi
	fi
	local secs rss
	read -r secs rss < <(tail -n 1 "$tf")
	rm -f "$tf"
	printf 'time\t%s\t%s\t%s\t%s\t%s\n' "$c" "$who" "$round" "$secs" "$rss" >>"$RESULTS"
	log "$c $who round $round: ${secs}s, $((rss / 1024)) MB"
}

note() { printf 'note\t%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

# wait_port PORT: until something accepts on 127.0.0.1:PORT.
wait_port() {
	local i
	for i in $(seq 1 300); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# start_slapd N: loads N generated entries into a fresh slapd and starts it;
# sets LDAP_URL. The configuration is the one of sources/ldap/ldaptest
# (mdb, syncprov), with a session log so that an incremental refresh is
# answered from the log, as a production server would be configured.
start_slapd() {
	local n=$1 dir="$WORK/slapd-$1"
	rm -rf "$dir"
	mkdir -p "$dir/db"
	cat >"$dir/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
pidfile $dir/slapd.pid
argsfile $dir/slapd.args
database mdb
suffix "$SUFFIX"
rootdn "cn=admin,$SUFFIX"
rootpw admin-secret
directory $dir/db
maxsize 8589934592
index objectClass eq
index entryUUID,entryCSN eq
limits dn.exact="$READER" size=unlimited time=unlimited
access to attrs=userPassword by anonymous auth by * none
access to * by * read
overlay syncprov
syncprov-checkpoint 100 10
syncprov-sessionlog 10000
EOF
	{
		printf 'dn: %s\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: example\n\n' "$SUFFIX"
		printf 'dn: ou=service,%s\nobjectClass: organizationalUnit\nou: service\n\n' "$SUFFIX"
		printf 'dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: bench-reader-secret\n\n' "$READER"
		"$GEN" ldif -n "$n" -suffix "$SUFFIX" -uuids "$LDAP_UUIDS"
	} >"$dir/load.ldif"
	log "slapadd of $n entries"
	local t0=$SECONDS
	"$SLAPADD" -f "$dir/slapd.conf" -q -w -l "$dir/load.ldif" >"$dir/slapadd.log" 2>&1 || {
		cat "$dir/slapadd.log" >&2
		die "slapadd failed"
	}
	rm -f "$dir/load.ldif"
	log "slapadd took $((SECONDS - t0))s"
	local port
	port=$("$GEN" freeport)
	LDAP_URL=ldap://127.0.0.1:$port
	"$SLAPD" -d 0 -f "$dir/slapd.conf" -h "$LDAP_URL/" >"$dir/slapd.log" 2>&1 &
	SLAPD_PID=$!
	PIDS+=("$SLAPD_PID")
	wait_port "$port" || die "slapd did not listen on $port, see $dir/slapd.log"
}

stop_pid() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# mapping is the job mapping shared by the LDAP cases.
ldap_config() {
	cat <<EOF
state: state.db
log: {format: text, level: info}
listen: ""
jobs:
  - name: dir
    schedule: "@daily"
    source:
      ldap:
        url: $LDAP_URL
        bind_dn: $READER
        bind_password_file: $WORK/reader.password
        base_dn: $BASE
        filter: (objectClass=inetOrgPerson)
        page_size: 500
        incremental: auto
    mapping:
      display_name: "{{.cn}}"
      first_name: "{{.givenName}}"
      last_name: "{{.sn}}"
      phones:
        - {value: "{{.telephoneNumber}}", type: work}
        - {value: "{{.mobile}}", type: mobile}
      phone_region: FR
      email: "{{.mail}}"
      title: "{{.title}}"
      company_name: "{{.o}}"
      address: {street: "{{.street}}", city: "{{.l}}", zip: "{{.postalCode}}"}
    sink:
      csv: {dir: outbox, max_rows: 10000}
    safety: {max_deletes: 500, max_delete_percent: 10, min_source_records: 1}
EOF
}

# ldapsearch_cmd is the baseline: the same entries and attributes, paged
# by 500, written as LDIF (measure sends stdout to a file).
ldapsearch_cmd() {
	LDAPSEARCH=(ldapsearch -x -H "$LDAP_URL" -D "$READER" -y "$WORK/reader.password" -b "$BASE" -LLL
		-E pr=500/noprompt "(objectClass=inetOrgPerson)"
		entryUUID cn givenName sn telephoneNumber mobile mail title o street l postalCode)
}

# run_pair CASE ROUND CS-CMD BASELINE-CMD: both, in an order that flips
# every round.
run_pair() {
	local c=$1 round=$2 a=$3 b=$4
	if ((round % 2)); then
		eval "$a"
		eval "$b"
	else
		eval "$b"
		eval "$a"
	fi
}

# ldap_cases N TAG RSS_TARGET ROUNDS: the LDAP cases of N entries, the
# full and unchanged ones ROUNDS times.
ldap_cases() {
	local n=$1 tag=$2 rss_target=$3 rounds=$4 dir="$WORK/ldap-$1"
	start_slapd "$n"
	mkdir -p "$dir"
	ldap_config >"$dir/config.yaml"
	ldapsearch_cmd
	note "$tag-full" "<=1.5x, RSS <=$rss_target MB"
	note "$tag-unchanged" "<=1.2x, RSS <=$rss_target MB"
	note "$tag-incremental" "<=2 s ($CHANGES changes among $n)"
	local r
	for r in $(seq 1 "$rounds"); do
		run_pair "$tag-full" "$r" \
			'rm -rf "$dir/state.db"* "$dir/outbox"; (cd "$dir" && measure "$tag-full" contactsync "$r" "${CS[@]}" sync -c config.yaml)' \
			'measure "$tag-full" baseline "$r" "${LDAPSEARCH[@]}"'
	done
	for r in $(seq 1 "$rounds"); do
		run_pair "$tag-unchanged" "$r" \
			'(cd "$dir" && measure "$tag-unchanged" contactsync "$r" "${CS[@]}" sync -c config.yaml --full)' \
			'measure "$tag-unchanged" baseline "$r" "${LDAPSEARCH[@]}"'
	done
	grep -q "unchanged $n" "$WORK/logs/$tag-unchanged-contactsync-1.out" ||
		die "$tag-unchanged: the rerun changed something, see $WORK/logs/$tag-unchanged-contactsync-1.out"
	# Bind every contact as an upload to Control Hub and its export would,
	# so that the incremental changes are updates rather than changes
	# waiting for a UUID. Control Hub holds at most 200,000 contacts per
	# organization, so a bigger job is never reconciled in one export: its
	# incremental changes stay "waiting" (the pull does the same work).
	local changed="updated $CHANGES,"
	if ((n <= ${RECONCILE_MAX:-200000})); then
		"$GEN" export "$dir"/outbox/dir-run*-import-*.csv >"$dir/export.csv"
		(cd "$dir" && measure "$tag-reconcile" contactsync 1 "${CS[@]}" reconcile -c config.yaml --job dir export.csv)
		note "$tag-reconcile" "informative: binds the UUIDs of a Control Hub export of $n contacts"
	else
		changed="waiting $CHANGES,"
	fi
	for r in $(seq 1 "$ROUNDS"); do
		"$GEN" modify -n "$CHANGES" -of "$n" -round "$r" -suffix "$SUFFIX" >"$dir/modify.ldif"
		ldapmodify -x -H "$LDAP_URL" -D "cn=admin,$SUFFIX" -w admin-secret -f "$dir/modify.ldif" >/dev/null
		(cd "$dir" && measure "$tag-incremental" contactsync "$r" "${CS[@]}" sync -c config.yaml)
		grep -q "$changed" "$WORK/logs/$tag-incremental-contactsync-$r.out" ||
			die "$tag-incremental: expected $CHANGES updates, see $WORK/logs/$tag-incremental-contactsync-$r.out"
	done
	stop_pid "$SLAPD_PID"
	rm -rf "$WORK/slapd-$n/db" "$dir/outbox" "$dir/export.csv"
	[[ "${KEEP:-0}" == 1 ]] || rm -f "$dir"/state.db*
}

csv_config() {
	cat <<EOF
state: state.db
log: {format: text, level: info}
listen: ""
jobs:
  - name: crm
    schedule: "@daily"
    source:
      csv: {dir: $1, pattern: "*.csv", key: Supplier ID, mode: snapshot, delimiter: auto, encoding: auto, settle: 0s}
    mapping:
      display_name: '{{index . "Contact first name"}} {{index . "Contact last name"}} ({{.Company}})'
      first_name: '{{index . "Contact first name"}}'
      last_name: '{{index . "Contact last name"}}'
      phones:
        - {value: "{{.Phone}}", type: work}
        - {value: "{{.Mobile}}", type: mobile}
      phone_region: FR
      email: "{{.Email}}"
      title: '{{index . "Job title"}}'
      company_name: "{{.Company}}"
      address: {street: "{{.Street}}", city: "{{.City}}", zip: "{{.Postcode}}", country: "{{.Country}}"}
    sink:
$2
    safety: {max_deletes: 500, max_delete_percent: 10, min_source_records: 1}
EOF
}

csv_case() {
	local dir="$WORK/csv"
	mkdir -p "$dir/drop"
	log "generating a CRM drop of $N_CSV rows"
	"$GEN" csv -n "$N_CSV" >"$dir/drop/crm-$N_CSV.csv"
	touch -d '1 hour ago' "$dir/drop/crm-$N_CSV.csv"
	csv_config drop "      csv: {dir: outbox, max_rows: 10000}" >"$dir/config.yaml"
	note csv "faster than Python csv (<1x); $(($(stat -c %s "$dir/drop/crm-$N_CSV.csv") / 1000000)) MB Windows-1252"
	local r
	for r in $(seq 1 "$ROUNDS"); do
		run_pair csv "$r" \
			'rm -rf "$dir/state.db"* "$dir/outbox"; (cd "$dir" && measure csv contactsync "$r" "${CS[@]}" sync -c config.yaml)' \
			'measure csv baseline "$r" python3 "$ROOT/bench/baseline_csv.py" "$dir/drop/crm-$N_CSV.csv" "$dir/baseline.csv"'
	done
	rm -rf "$dir/outbox" "$dir/baseline.csv"
	[[ "${KEEP:-0}" == 1 ]] || rm -rf "$dir"/state.db* "$dir/drop"
}

# start_sim LATENCY: a fresh, empty simulator; sets SIM_URL.
start_sim() {
	local port
	port=$("$GEN" freeport)
	SIM_URL=http://127.0.0.1:$port/v1
	"$WORK/bin/webex-simulator" -listen "127.0.0.1:$port" -token-file "$WORK/sim.token" -latency "$1" \
		>"$WORK/logs/sim.out" 2>"$WORK/logs/sim-$2.err" &
	SIM_PID=$!
	PIDS+=("$SIM_PID")
	wait_port "$port" || die "the simulator did not listen on $port"
}

api_case() {
	local c=$1 n=$2 latency=$3 sinkopts=$4 dir="$WORK/$1"
	mkdir -p "$dir/drop" "$WORK/logs"
	"$GEN" csv -n "$n" >"$dir/drop/crm-$n.csv"
	touch -d '1 hour ago' "$dir/drop/crm-$n.csv"
	local r
	for r in $(seq 1 "$ROUNDS"); do
		start_sim "$latency" "$c-$r"
		csv_config drop "      webex: {base_url: \"$SIM_URL\", org_id: 0ae87ade-6c7a-4b6f-9d49-1b0e8a8f1c2d, token_file: $WORK/sim.token, $sinkopts}" >"$dir/config.yaml"
		rm -rf "$dir/state.db"*
		(cd "$dir" && measure "$c" contactsync "$r" "${CS[@]}" sync -c config.yaml)
		stop_pid "$SIM_PID"
		grep -q "created $n," "$WORK/logs/$c-contactsync-$r.out" ||
			die "$c: expected $n creates, see $WORK/logs/$c-contactsync-$r.out"
	done
	[[ "${KEEP:-0}" == 1 ]] || rm -rf "$dir"/state.db* "$dir/drop"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "work folder $WORK; load: $LOAD_START"
for group in $CASES; do
	case $group in
	ldap)
		ldap_cases "$N_LDAP" "ldap-$N_LDAP$UUID_TAG" 200 "$ROUNDS_SMALL"
		if ((N_LDAP_BIG > 0)); then
			ldap_cases "$N_LDAP_BIG" "ldap-$N_LDAP_BIG$UUID_TAG" 300 "$ROUNDS"
		fi
		;;
	csv) csv_case ;;
	api)
		note api "<=20 s client time for $N_API creates (0 ms latency)"
		api_case api "$N_API" 0s "batch_size: 100, requests_per_second: 1000, concurrency: 8"
		;;
	rate)
		api_case rate "$N_RATE" 50ms "batch_size: 100, requests_per_second: $RATE, concurrency: 4"
		# Achieved rate: bulk calls per second from the first to the last,
		# as the simulator logged them, against the configured RATE.
		note rate "50 ms latency, requests_per_second $RATE: achieved $("$GEN" rate "$WORK"/logs/sim-rate-*.err)"
		;;
	*) die "unknown case group $group (ldap csv api rate)" ;;
	esac
done

log "load at the end: $(uptime)"
{
	echo
	echo "contactsync bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3)"
	echo "rounds: $ROUNDS ($ROUNDS_SMALL for the $N_LDAP-entry full and unchanged cases); load average at the start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)${CS_ENV:+; contactsync environment: $CS_ENV}"
	echo
	"$GEN" table "$RESULTS"
} | tee "$WORK/results.md"
