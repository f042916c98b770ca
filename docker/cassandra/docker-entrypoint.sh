#!/bin/bash
# The entrypoint of the Cassandra image, with the environment contract of the official image
# (Docker Hub's cassandra, docker-library/cassandra), written anew for this one. Before
# `cassandra`, it edits $CASSANDRA_CONF/cassandra.yaml and cassandra-rackdc.properties in place:
#   CASSANDRA_LISTEN_ADDRESS     listen_address; "auto" (default) = this container's IP
#   CASSANDRA_BROADCAST_ADDRESS  broadcast_address; default the listen address ("auto" allowed)
#   CASSANDRA_RPC_ADDRESS        rpc_address; default 0.0.0.0
#   CASSANDRA_BROADCAST_RPC_ADDRESS  broadcast_rpc_address; default the broadcast address
#   CASSANDRA_SEEDS              the seed list; default the broadcast address (a node of its own)
#   CASSANDRA_CLUSTER_NAME, CASSANDRA_NUM_TOKENS, CASSANDRA_ENDPOINT_SNITCH   when set
#   CASSANDRA_DC, CASSANDRA_RACK  dc= and rack= of cassandra-rackdc.properties, when set
# "This container's IP" is POD_IP when set (the chart sets it from status.podIP), else the first
# IPv4 address of a non-loopback interface. MAX_HEAP_SIZE, HEAP_NEWSIZE, JVM_OPTS, JVM_EXTRA_OPTS
# and JMX_PORT are read by bin/cassandra. With no arguments, or options only, it runs
# `cassandra -f [options]`; any other command runs as given, untouched.
# The files are rewritten through a temporary copy in /tmp and `cat >`, not `sed -i`, so a
# bind-mounted cassandra.yaml works too; nothing else on the root filesystem is written.
set -euo pipefail
CASSANDRA_CONF=${CASSANDRA_CONF:-/etc/cassandra}

if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- cassandra -f "$@"
fi

# Started as root (`podman run --user 0`): hand the writable directories to cassandra and run as it.
if [ "$1" = cassandra ] && [ "$(id -u)" = 0 ]; then
  find /var/lib/cassandra /var/log/cassandra "$CASSANDRA_CONF" ! -user cassandra -exec chown cassandra:cassandra {} +
  exec setpriv --reuid=cassandra --regid=cassandra --init-groups "$0" "$@"
fi

own_ip() {
  if [ -n "${POD_IP:-}" ]; then echo "$POD_IP"; return; fi
  local ip
  for ip in $(hostname -I 2>/dev/null); do
    case $ip in 127.*) ;; *.*) echo "$ip"; return ;; esac
  done
  hostname -i | awk '{ print $1 }'
}

# rewrite FILE AWK_PROGRAM: FILE filtered through awk (values come in through ENVIRON, so quotes,
# slashes and backslashes in them are taken literally).
rewrite() {
  local file=$1 tmp
  tmp=$(mktemp)
  awk "$2" "$file" > "$tmp"
  cat "$tmp" > "$file"
  rm -f "$tmp"
}

# set_yaml KEY VALUE: the top-level "KEY: VALUE" line of cassandra.yaml, replacing the key's line
# (or its commented-out "# KEY:" example) or appended when the file has neither.
set_yaml() {
  KEY=$1 VALUE=$2 rewrite "$CASSANDRA_CONF/cassandra.yaml" '
    !done && ($0 ~ "^" ENVIRON["KEY"] ":" || $0 ~ "^# " ENVIRON["KEY"] ":") {
      print ENVIRON["KEY"] ": " ENVIRON["VALUE"]; done = 1; next }
    { print }
    END { if (!done) print ENVIRON["KEY"] ": " ENVIRON["VALUE"] }'
}

# YAML single-quoted scalar: any text, with quotes doubled.
quote() { local s=${1//\'/\'\'}; echo "'$s'"; }

if [ "$1" = cassandra ]; then
  if [ ! -w "$CASSANDRA_CONF/cassandra.yaml" ]; then
    echo "docker-entrypoint.sh: $CASSANDRA_CONF/cassandra.yaml is not writable: with a read-only root" \
      "filesystem, mount a volume at $CASSANDRA_CONF holding a copy of the image's (the chart's init" \
      "container makes it)" >&2
    exit 1
  fi
  : "${CASSANDRA_LISTEN_ADDRESS:=auto}"
  if [ "$CASSANDRA_LISTEN_ADDRESS" = auto ]; then CASSANDRA_LISTEN_ADDRESS=$(own_ip); fi
  : "${CASSANDRA_BROADCAST_ADDRESS:=$CASSANDRA_LISTEN_ADDRESS}"
  if [ "$CASSANDRA_BROADCAST_ADDRESS" = auto ]; then CASSANDRA_BROADCAST_ADDRESS=$(own_ip); fi
  : "${CASSANDRA_RPC_ADDRESS:=0.0.0.0}"
  : "${CASSANDRA_BROADCAST_RPC_ADDRESS:=$CASSANDRA_BROADCAST_ADDRESS}"
  : "${CASSANDRA_SEEDS:=$CASSANDRA_BROADCAST_ADDRESS}"

  set_yaml listen_address "$CASSANDRA_LISTEN_ADDRESS"
  set_yaml broadcast_address "$CASSANDRA_BROADCAST_ADDRESS"
  set_yaml rpc_address "$CASSANDRA_RPC_ADDRESS"
  set_yaml broadcast_rpc_address "$CASSANDRA_BROADCAST_RPC_ADDRESS"
  if [ -n "${CASSANDRA_CLUSTER_NAME:-}" ]; then set_yaml cluster_name "$(quote "$CASSANDRA_CLUSTER_NAME")"; fi
  if [ -n "${CASSANDRA_NUM_TOKENS:-}" ]; then set_yaml num_tokens "$CASSANDRA_NUM_TOKENS"; fi
  if [ -n "${CASSANDRA_ENDPOINT_SNITCH:-}" ]; then set_yaml endpoint_snitch "$CASSANDRA_ENDPOINT_SNITCH"; fi
  # The seed provider's "- seeds:" parameter, wherever it is indented.
  SEEDS=$CASSANDRA_SEEDS rewrite "$CASSANDRA_CONF/cassandra.yaml" '
    match($0, /^[[:space:]]*- seeds:/) { print substr($0, 1, RLENGTH) " \"" ENVIRON["SEEDS"] "\""; next }
    { print }'

  for key in dc rack; do
    var=CASSANDRA_${key^^}
    if [ -n "${!var:-}" ]; then
      KEY=$key VALUE=${!var} rewrite "$CASSANDRA_CONF/cassandra-rackdc.properties" '
        $0 ~ "^" ENVIRON["KEY"] "=" { print ENVIRON["KEY"] "=" ENVIRON["VALUE"]; done = 1; next }
        { print }
        END { if (!done) print ENVIRON["KEY"] "=" ENVIRON["VALUE"] }'
    fi
  done
fi

exec "$@"
