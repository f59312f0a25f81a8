#!/usr/bin/env bash
# Side by side on one real Moodle and one slapd: Moodle core's own LDAP sync (auth_ldap
# sync_users.php, ../shared/moodle-lab/peers/auth_ldap.sh) against `handler sync --users`:
# initial load, a run with no change, and a run after 100 changed people, for each Moodle
# configuration given (untuned; allowaccountssameemail=1; an index on lower(email)).
# Each measurement starts from a freshly installed Moodle (MOODLE_REINSTALL=1), so run it on
# a lab instance of your own, never a shared one. Prints figures; asserts nothing.
#
#   MOODLE_LAB_DIR=/tmp/moodle-lab-perf MOODLE_HTTP_PORT=8090 MOODLE_PGPORT=5434 \
#     bash scripts/bench-moodle-lab.sh [--users 2000] [--configs plain,samemail,lowerindex] \
#                                      [--concurrency 1,2,4] [--peer yes|no]
# Needs: root, slapd + ldap-utils, the lab (../shared/moodle-lab/setup.sh), cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
USERS=2000 CONFIGS=plain,samemail,lowerindex CONC="" PEER=yes
while [[ $# -gt 0 ]]; do
  case $1 in
    --users) USERS=$2; shift 2;;
    --configs) CONFIGS=$2; shift 2;;
    --concurrency) CONC=$2; shift 2;;
    --peer) PEER=$2; shift 2;;
    *) sed -n '2,13p' "$0"; exit 2;;
  esac
done
: "${MOODLE_LAB_DIR:?set MOODLE_LAB_DIR to your own lab instance}"
export MOODLE_LAB_DIR MOODLE_HTTP_PORT=${MOODLE_HTTP_PORT:-8090} MOODLE_PGPORT=${MOODLE_PGPORT:-5434}
LABSRC=${MOODLE_LAB_SRC:-$(dirname "${FIXTURES_DIR:-$ROOT/../shared/fixtures}")/moodle-lab}
FIX=${FIXTURES_DIR:-$ROOT/../shared/fixtures}
# BENCH_PROFILE=debug skips the (slow, LTO) release build: the bridge's own CPU is a small part
# of these figures (Moodle's PHP and PostgreSQL dominate), but say which profile you measured.
PROFILE=${BENCH_PROFILE:-release}
T=${CARGO_TARGET_DIR:-target}/$PROFILE
if [[ $PROFILE == release ]]; then cargo build --quiet --release --workspace --bins; else cargo build --quiet --workspace --bins; fi
WORK=$(mktemp -d /tmp/bench-moodle-lab.XXXXXX)
SLAPD_PID=""
cleanup() { [[ -n $SLAPD_PID ]] && kill "$SLAPD_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }

# ---- slapd with the generated directory (as tests/common/slapd.rs builds it)
PATH=$PATH:/usr/sbin
SUFFIX=dc=ent,dc=example ROOTDN=cn=admin,dc=ent,dc=example ROOTPW=bench-root READER=cn=reader,dc=ent,dc=example READERPW=bench-reader
SCHEMA_DIR=${LDAP_SCHEMA_DIR:-/etc/ldap/schema}
MODDIR=$(for d in /usr/lib/ldap /usr/lib/openldap /usr/lib64/openldap; do [[ -e $d/back_mdb.la || -e $d/back_mdb.so ]] && echo $d && break; done)
mkdir -p "$WORK/slapd.d" "$WORK/db"
{
  printf 'dn: cn=config\nobjectClass: olcGlobal\ncn: config\nolcPidFile: %s/slapd.pid\n\n' "$WORK"
  [[ -n $MODDIR ]] && printf 'dn: cn=module{0},cn=config\nobjectClass: olcModuleList\ncn: module{0}\nolcModulePath: %s\nolcModuleLoad: back_mdb\n\n' "$MODDIR"
  printf 'dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n'
  for s in core cosine inetorgperson nis; do cat "$SCHEMA_DIR/$s.ldif"; echo; done
  cat "$FIX/ent/sdet.schema.ldif"; echo
  printf 'dn: olcDatabase={-1}frontend,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcFrontendConfig\nolcDatabase: {-1}frontend\n\n'
  printf 'dn: olcDatabase={0}config,cn=config\nobjectClass: olcDatabaseConfig\nolcDatabase: {0}config\nolcRootDN: cn=admin,cn=config\n\n'
  printf 'dn: olcDatabase={1}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\nolcDatabase: {1}mdb\nolcSuffix: %s\nolcDbDirectory: %s/db\nolcDbMaxSize: 1073741824\nolcRootDN: %s\nolcRootPW: %s\nolcSizeLimit: size.soft=500 size.hard=500 size.prtotal=unlimited\nolcDbIndex: objectClass eq\nolcDbIndex: uid eq\nolcDbIndex: ENTPersonLogin eq\nolcDbIndex: entryCSN eq\nolcDbIndex: modifyTimestamp eq\nolcAccess: to attrs=userPassword by anonymous auth by * none\nolcAccess: to * by * read\n\n' "$SUFFIX" "$WORK" "$ROOTDN" "$ROOTPW"
} > "$WORK/config.ldif"
slapadd -q -n0 -F "$WORK/slapd.d" -l "$WORK/config.ldif"
"$T/bench" ent-ldif --users "$USERS" --no-duplicate-logins > "$WORK/people.ldif"
printf '\ndn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: %s\n\n' "$READER" "$READERPW" >> "$WORK/people.ldif"
slapadd -q -n1 -F "$WORK/slapd.d" -l "$WORK/people.ldif"
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
URL=ldap://127.0.0.1:$PORT
slapd -d 0 -h "$URL/" -F "$WORK/slapd.d" 2>"$WORK/slapd.log" & SLAPD_PID=$!
for _ in $(seq 100); do ldapsearch -x -H "$URL" -s base -b "" >/dev/null 2>&1 && break; sleep 0.1; done
IN_SCOPE=$(ldapsearch -x -LLL -E pr=500/noprompt -H "$URL" -D "$READER" -w "$READERPW" -b "ou=people,$SUFFIX" \
  '(|(objectClass=ENTEleve)(objectClass=ENTAuxEnseignant)(objectClass=ENTAuxNonEnsEtab)(objectClass=ENTAuxNonEnsCollLoc))' dn | grep -c '^dn:')

ROUND=0
# 100 people change their last name (a new value each round, so every round is a real change).
change_100() {
  ROUND=$((ROUND + 1))
  for i in $(seq 0 19 $((19 * 99))); do
    printf 'dn: uid=U%07d,ou=people,%s\nchangetype: modify\nreplace: sn\nsn: Changed%d-%d\n\n' "$i" "$SUFFIX" "$ROUND" "$i"
  done | ldapmodify -x -H "$URL" -D "$ROOTDN" -w "$ROOTPW" >/dev/null
}
uid_check() { ldapsearch -x -LLL -H "$URL" -D "$READER" -w "$READERPW" -b "ou=people,$SUFFIX" '(uid=U0000019)' uid | grep -q '^uid: U0000019' || { echo "generated uids are not U%07d: fix change_100" >&2; exit 1; }; }
uid_check

lab() { # config name → a fresh Moodle with that tuning
  local cfg="" idx=""
  case $1 in plain) ;; samemail) cfg=allowaccountssameemail=1;; lowerindex) idx=1;; esac
  # A reinstall can trip over the running PHP server's cache writes: one more try.
  for try in 1 2; do
    MOODLE_REINSTALL=1 MOODLE_LAB_CFG=$cfg MOODLE_LAB_LOWER_EMAIL_INDEX=$idx bash "$LABSRC/setup.sh" > "$WORK/setup.log" 2>&1 && return 0
    [[ $try == 2 ]] && { grep -v '^[*+]' "$WORK/setup.log" | tail -20; exit 1; }
  done
}
users_in_moodle() {
  runuser -u postgres -- psql -h "$MOODLE_LAB_DIR/pg/run" -p "$MOODLE_PGPORT" -U postgres -qAt -d moodle \
    -c "select count(*) from mdl_user where deleted = 0" 2>/dev/null || echo "?"
}

peer() { # $1 config
  lab "$1"
  LDAP_URL=$URL LDAP_BIND_DN=$READER LDAP_BIND_PASSWORD=$READERPW LDAP_PEOPLE_BASE=ou=people,$SUFFIX \
    bash "$LABSRC/peers/auth_ldap.sh" configure >/dev/null
  local a b c
  # A failed peer run shows its log before the work folder goes.
  peer_sync() { bash "$LABSRC/peers/auth_ldap.sh" sync > "$1" 2>&1 || { echo "auth_ldap sync failed:" >&2; tail -20 "$1" >&2; exit 1; }; }
  a=$(now); peer_sync "$WORK/peer1.log"; b=$(now); P_INIT=$(secs "$a" "$b")
  a=$(now); peer_sync "$WORK/peer2.log"; b=$(now); P_NOOP=$(secs "$a" "$b")
  change_100
  a=$(now); peer_sync "$WORK/peer3.log"; c=$(now); P_100=$(secs "$a" "$c")
  P_USERS=$(users_in_moodle)
}

bridge() { # $1 config, $2 concurrency
  lab "$1"
  local env=(
    "MOODLE_URL=http://127.0.0.1:$MOODLE_HTTP_PORT/moodle" "MOODLE_TOKEN=$(cat "$MOODLE_LAB_DIR/token.txt")"
    "MOODLE_MAX_FORM_FIELDS=5000" "LDAP_URL=$URL" "LDAP_BIND_DN=$READER" "LDAP_BIND_PASSWORD=$READERPW"
    "LDAP_PEOPLE_BASE=ou=people,$SUFFIX" "SYNC_ROLE_RULES=-" "SYNC_WRITE_CONCURRENCY=$2"
    "SQLITE_PATH=$WORK/bridge-$1-$2.sqlite" "BLOB_DIR=$WORK/blobs" "BRIDGE_SETTINGS_FILE=$WORK/none.json" "LOG_LEVEL=warn")
  rm -f "$WORK/bridge-$1-$2.sqlite"*
  local a b
  a=$(now); env "${env[@]}" "$T/handler" sync --users > "$WORK/b1.log" 2>&1 || true; b=$(now); B_INIT=$(secs "$a" "$b")
  B_CREATED=$(awk '$1=="users"{print $2}' "$WORK/b1.log")
  B_WARN=$(grep -c '^warning: creating users slowed' "$WORK/b1.log" || true)
  a=$(now); env "${env[@]}" "$T/handler" sync --users > "$WORK/b2.log" 2>&1 || true; b=$(now); B_NOOP=$(secs "$a" "$b")
  # What the no-change run read and wrote, so its time can be explained.
  B_NOOP_SRC=$(grep -m1 '^source:' "$WORK/b2.log" || echo "source: ?")
  change_100
  a=$(now); env "${env[@]}" "$T/handler" sync --users > "$WORK/b3.log" 2>&1 || true; b=$(now); B_100=$(secs "$a" "$b")
  B_UPDATED=$(awk '$1=="users"{print $3}' "$WORK/b3.log")
  B_USERS=$(users_in_moodle)
}

echo "conditions: $PROFILE build, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ); $USERS people generated, $IN_SCOPE in scope; Moodle $MOODLE_LAB_DIR (PHP workers ${MOODLE_PHP_WORKERS:-4})"
if [[ -n $CONC ]]; then
  for cfg in ${CONFIGS//,/ }; do
    for n in ${CONC//,/ }; do
      bridge "$cfg" "$n"
      echo "concurrency $n [$cfg]: bridge initial ${B_INIT}s (created ${B_CREATED:-?}, moodle users ${B_USERS}, slow-down warnings ${B_WARN}); no-change ${B_NOOP}s (${B_NOOP_SRC}); 100 changes ${B_100}s (updated ${B_UPDATED:-?}); load $(cut -d' ' -f1 /proc/loadavg)"
    done
  done
  exit 0
fi
N=${SYNC_WRITE_CONCURRENCY:-2}
printf '%-11s | %-27s | %-27s | %-27s\n' config "initial (peer / bridge / ratio)" "no change (peer / bridge / x)" "100 changes (peer / bridge / x)"
for cfg in ${CONFIGS//,/ }; do
  if [[ $PEER == yes ]]; then peer "$cfg"; else P_INIT=nan P_NOOP=nan P_100=nan P_USERS='?'; fi
  bridge "$cfg" "$N"
  python3 - "$cfg" "$P_INIT" "$B_INIT" "$P_NOOP" "$B_NOOP" "$P_100" "$B_100" <<'PY'
import sys
c, pi, bi, pn, bn, p1, b1 = sys.argv[1], *map(float, sys.argv[2:])
print(f"{c:<11} | {pi:6.1f}s / {bi:6.1f}s / {bi/pi:4.2f} | {pn:6.2f}s / {bn:5.2f}s / {pn/bn:5.0f}x | {p1:6.2f}s / {b1:5.2f}s / {p1/b1:5.1f}x")
PY
  echo "            (moodle users after: peer ${P_USERS}, bridge ${B_USERS}; bridge created ${B_CREATED:-?}, updated ${B_UPDATED:-?} on the change run, slow-down warnings ${B_WARN}; no-change ${B_NOOP_SRC}; load $(cut -d' ' -f1 /proc/loadavg))"
done
