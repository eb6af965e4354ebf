# GANETI part of scripts/testbed: sourced, defines ganeti_up/down/status/env.
#
# A one-node Ganeti 3.0 cluster (Debian's packages) in a network namespace of
# its own, reachable from the root namespace over a veth pair. See
# scripts/testbed.d/README.md for the layout.

GANETI_NETNS="${GANETI_NETNS:-gnt}"
GANETI_DIR="$TESTBED_DIR/ganeti"
GANETI_HOST_IP=198.51.100.1        # root namespace end of the veth
GANETI_NODE_IP=198.51.100.10       # node1, namespace end of the veth
GANETI_CLUSTER_IP=198.51.100.100   # cluster (master) IP, on lo in the namespace
GANETI_NODE=node1.ganeti.test
GANETI_CLUSTER_NAME=cluster.ganeti.test
GANETI_RAPI_PORT=5080
GANETI_VETH_HOST="${GANETI_NETNS}-host"
GANETI_VETH_NODE="${GANETI_NETNS}-node"
GANETI_OS_DIR=/srv/ganeti/os/noop
GANETI_RAPI_USER=ganeti-operator
GANETI_RAPI_RO_USER=viewer
# Entries of /etc/ganeti that the Debian package ships; everything else there is
# cluster state and goes when the testbed wipes.
GANETI_ETC_KEEP=(kvm-ifup-os xen-ifup-os lib share)

_gnt_holder_pid() { cat "$TESTBED_DIR/pids/ganeti-holder.pid" 2>/dev/null; }

# The holder runs, and sits in the namespace that carries our name.
_gnt_holder_ok() {
  local pid
  pid="$(_gnt_holder_pid)" || return 1
  pid_alive ganeti-holder || return 1
  [[ -e /run/netns/$GANETI_NETNS ]] || return 1
  [[ "$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null)" == "$(stat -L -c %i "/run/netns/$GANETI_NETNS")" ]] || return 1
  [[ "$(readlink "/proc/$pid/ns/uts")" != "$(readlink /proc/self/ns/uts)" ]]
}

_gnt_rapi_ok() { # _gnt_rapi_ok USER PASSWORD
  curl -sf --max-time 5 --cacert "$GANETI_DIR/rapi-ca.pem" -u "$1:$2" \
    "https://$GANETI_NODE_IP:$GANETI_RAPI_PORT/2/info" >/dev/null 2>&1
}

ganeti_status() {
  [[ -f $GANETI_DIR/rapi-password && -f $GANETI_DIR/rapi-ca.pem ]] || return 1
  _gnt_holder_ok || return 1
  _gnt_rapi_ok "$GANETI_RAPI_USER" "$(cat "$GANETI_DIR/rapi-password")"
}

# End the processes listed in /var/run/ganeti/*.pid (checked to be Ganeti's),
# then anything left inside our namespace (job processes, qemu), by pid.
_gnt_kill_leftovers() {
  local f pid pids=() n
  for f in /var/run/ganeti/*.pid; do
    [[ -f $f ]] || continue
    pid="$(cat "$f" 2>/dev/null)" || continue
    [[ $pid =~ ^[0-9]+$ ]] || continue
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q ganeti && pids+=("$pid")
  done
  if [[ -e /run/netns/$GANETI_NETNS ]]; then
    for pid in $(ip netns pids "$GANETI_NETNS" 2>/dev/null); do pids+=("$pid"); done
  fi
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 25); do
    n=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && n=$((n + 1)); done
    ((n)) || return 0
    sleep 0.2
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  sleep 0.2
}

# Remove every trace of a cluster and of the namespace (used on stale state and
# as the last step of down). Never fails.
_gnt_wipe() {
  local f
  _gnt_kill_leftovers
  stop_daemon ganeti-holder
  _gnt_kill_leftovers # the holder may have hidden a last process
  ip link del "$GANETI_VETH_HOST" 2>/dev/null || true
  [[ -e /run/netns/$GANETI_NETNS ]] && { ip netns del "$GANETI_NETNS" 2>/dev/null || true; }
  rm -rf "/etc/netns/$GANETI_NETNS"
  rmdir /etc/netns 2>/dev/null || true
  rm -rf /var/run/ganeti
  if [[ -d /var/lib/ganeti ]]; then
    find /var/lib/ganeti -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || true
  fi
  for f in /etc/ganeti/* /etc/ganeti/.[!.]*; do
    [[ -e $f || -L $f ]] || continue
    [[ " ${GANETI_ETC_KEEP[*]} " == *" $(basename "$f") "* ]] || rm -rf "$f"
  done
  rm -rf "$GANETI_OS_DIR"
  rmdir /srv/ganeti/os /srv/ganeti 2>/dev/null || true
  rm -rf "$GANETI_DIR"
}

_gnt_make_certs() {
  local d="$GANETI_DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -subj "/CN=ganeti-operator testbed CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$d/rapi-ca.key" -out "$d/rapi-ca.pem" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=$GANETI_CLUSTER_NAME" \
    -keyout "$d/rapi.key" -out "$d/rapi.csr" 2>/dev/null
  cat >"$d/rapi.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$GANETI_CLUSTER_NAME,DNS:$GANETI_NODE,IP:$GANETI_NODE_IP,IP:$GANETI_CLUSTER_IP,IP:127.0.0.1
EOF
  openssl x509 -req -in "$d/rapi.csr" -CA "$d/rapi-ca.pem" -CAkey "$d/rapi-ca.key" \
    -CAcreateserial -days 825 -sha256 -extfile "$d/rapi.ext" -out "$d/rapi.crt" 2>/dev/null
  # Ganeti wants key and certificate in one file.
  cat "$d/rapi.key" "$d/rapi.crt" >"$d/rapi.pem"
  chmod 600 "$d"/*.key "$d/rapi.pem"
}

_gnt_make_os() {
  mkdir -p "$GANETI_OS_DIR"
  echo 20 >"$GANETI_OS_DIR/ganeti_api_version"
  echo "ssh_authorized_keys SSH public keys for the instance (one per line)" >"$GANETI_OS_DIR/parameters.list"
  : >"$GANETI_OS_DIR/variants.list"
  local s
  for s in create import export rename verify; do
    cat >"$GANETI_OS_DIR/$s" <<'EOF'
#!/bin/sh
# no-op OS definition of the ganeti-operator testbed: installs nothing, logs
# what it was given (Ganeti keeps the output under /var/log/ganeti/os/).
echo "noop $(basename "$0") instance=${INSTANCE_NAME:-} ssh_authorized_keys=${OSP_SSH_AUTHORIZED_KEYS:-}"
exit 0
EOF
    chmod 755 "$GANETI_OS_DIR/$s"
  done
}

_gnt_write_users() {
  mkdir -p /var/lib/ganeti/rapi
  printf '%s %s write\n%s %s\n' \
    "$GANETI_RAPI_USER" "$(cat "$GANETI_DIR/rapi-password")" \
    "$GANETI_RAPI_RO_USER" "$(cat "$GANETI_DIR/rapi-ro-password")" >/var/lib/ganeti/rapi/users.tmp
  chown root:gnt-rapi /var/lib/ganeti/rapi/users.tmp 2>/dev/null || true
  chmod 640 /var/lib/ganeti/rapi/users.tmp
  mv /var/lib/ganeti/rapi/users.tmp /var/lib/ganeti/rapi/users
}

# Network namespace, veth pair, hosts file, holder process with its hostname.
_gnt_make_netns() {
  mkdir -p "/etc/netns/$GANETI_NETNS"
  cat >"/etc/netns/$GANETI_NETNS/hosts" <<EOF
127.0.0.1 localhost
$GANETI_NODE_IP $GANETI_NODE ${GANETI_NODE%%.*}
$GANETI_CLUSTER_IP $GANETI_CLUSTER_NAME ${GANETI_CLUSTER_NAME%%.*}
EOF
  ip netns add "$GANETI_NETNS"
  ip -n "$GANETI_NETNS" link set lo up
  ip link add "$GANETI_VETH_HOST" type veth peer name "$GANETI_VETH_NODE" netns "$GANETI_NETNS"
  ip addr add "$GANETI_HOST_IP/24" dev "$GANETI_VETH_HOST"
  ip link set "$GANETI_VETH_HOST" up
  ip -n "$GANETI_NETNS" addr add "$GANETI_NODE_IP/24" dev "$GANETI_VETH_NODE"
  ip -n "$GANETI_NETNS" link set "$GANETI_VETH_NODE" up
  # Routed instance NICs (198.51.100.5x): answer ARP for them on the veth.
  ip netns exec "$GANETI_NETNS" sysctl -qw net.ipv4.ip_forward=1 "net.ipv4.conf.$GANETI_VETH_NODE.proxy_arp=1" || true

  # Debian's daemon-util reads RAPI_ARGS from /etc/default/ganeti (it binds
  # 127.0.0.1 there). Inside the holder's mount namespace only, that file is
  # replaced so that ganeti-rapi listens on all of the node's addresses.
  cat >"$GANETI_DIR/default-ganeti" <<'EOF'
# ganeti-operator testbed: bind-mounted over /etc/default/ganeti in the node's
# mount namespace only.
NODED_ARGS=""
RAPI_ARGS="-b 0.0.0.0 --require-authentication"
CONFD_ARGS=""
MOND_ARGS=""
WCONFD_ARGS=""
LUXID_ARGS=""
KVMD_ARGS=""
EOF
  # shellcheck disable=SC2016
  start_daemon ganeti-holder "$GANETI_DIR/holder.log" \
    ip netns exec "$GANETI_NETNS" unshare --uts --mount --propagation private \
    sh -c 'hostname "$1" && mount --bind "$2" /etc/default/ganeti && exec sleep infinity' \
    holder "$GANETI_NODE" "$GANETI_DIR/default-ganeti"
  wait_for "the Ganeti node's namespace" 10 _gnt_holder_ok
  wait_for "the Ganeti node's hostname" 10 sh -c '[ "$(nsenter -t "$1" --uts hostname)" = "$2" ]' _ "$(_gnt_holder_pid)" "$GANETI_NODE"
}

_gnt_init() {
  log "ganeti: initialising cluster $GANETI_CLUSTER_NAME"
  timeout 120 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
    gnt-cluster init \
    --enabled-hypervisors=fake,kvm \
    -H "kvm:kvm_path=/usr/bin/qemu-system-x86_64,kvm_flag=disabled,vnc_bind_address=0.0.0.0,vhost_net=false,use_chroot=false,kernel_path=" \
    --enabled-disk-templates=diskless \
    --master-netdev=lo \
    --nic-parameters=mode=routed,link= \
    --no-ssh-init --no-etc-hosts \
    "$GANETI_CLUSTER_NAME" >"$GANETI_DIR/init.log" 2>&1 ||
    { cat "$GANETI_DIR/init.log" >&2; die "gnt-cluster init failed (log: $GANETI_DIR/init.log)"; }
}

# Daemons died but the namespace and the configuration are intact: start them.
_gnt_try_restart() {
  [[ -f /var/lib/ganeti/config.data && -f $GANETI_DIR/rapi-password ]] || return 1
  _gnt_holder_ok || return 1
  log "ganeti: cluster daemons not answering; restarting them"
  _gnt_kill_leftovers_daemons_only
  timeout 60 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
    /usr/lib/ganeti/daemon-util start-all >"$GANETI_DIR/restart.log" 2>&1 || return 1
  local deadline=$((SECONDS + 30))
  until ganeti_status; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
  timeout 30 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
    gnt-cluster activate-master-ip >>"$GANETI_DIR/restart.log" 2>&1 || true
}

# Like _gnt_kill_leftovers but keeps the holder (only Ganeti's own pid files).
_gnt_kill_leftovers_daemons_only() {
  local f pid
  for f in /var/run/ganeti/*.pid; do
    [[ -f $f ]] || continue
    pid="$(cat "$f" 2>/dev/null)" || continue
    [[ $pid =~ ^[0-9]+$ ]] || continue
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q ganeti; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

ganeti_up() {
  if ganeti_status; then
    _gnt_write_users # same passwords; repairs the file if someone changed it
    log "ganeti: reusing the running cluster"
    return 0
  fi
  if _gnt_try_restart; then
    log "ganeti: restarted the daemons of the existing cluster"
    return 0
  fi
  if [[ -e /run/netns/$GANETI_NETNS || -e /etc/netns/$GANETI_NETNS || -f /var/lib/ganeti/config.data || -d /var/run/ganeti || -d $GANETI_DIR || -f $TESTBED_DIR/pids/ganeti-holder.pid ]]; then
    log "ganeti: stale state found; wiping it"
  fi
  _gnt_wipe
  mkdir -p "$GANETI_DIR"
  command -v gnt-cluster >/dev/null || die "ganeti is not installed (scripts/install-deps)"

  _gnt_make_certs
  openssl rand -hex 16 >"$GANETI_DIR/rapi-password"
  openssl rand -hex 16 >"$GANETI_DIR/rapi-ro-password"
  chmod 600 "$GANETI_DIR"/rapi-*password
  _gnt_make_os
  _gnt_make_netns

  _gnt_init
  _gnt_write_users
  # init refuses a pre-placed /var/lib/ganeti/rapi.pem, and Ganeti 3.0.2's
  # `gnt-cluster renew-crypto --rapi-certificate=FILE` alone silently does
  # nothing (it only writes the file together with --new-cluster-domain-secret
  # and friends, with the whole cluster stopped). One node: swap the file and
  # restart ganeti-rapi.
  timeout 60 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
    /usr/lib/ganeti/daemon-util stop ganeti-rapi >/dev/null 2>&1 || true
  install -m 440 -o gnt-rapi -g gnt-masterd "$GANETI_DIR/rapi.pem" /var/lib/ganeti/rapi.pem
  timeout 60 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
    /usr/lib/ganeti/daemon-util start ganeti-rapi >"$GANETI_DIR/rapi-restart.log" 2>&1 ||
    { cat "$GANETI_DIR/rapi-restart.log" >&2; die "could not restart ganeti-rapi"; }
  wait_for "Ganeti RAPI on https://$GANETI_NODE_IP:$GANETI_RAPI_PORT" 60 ganeti_status
  # ganeti-rapi must serve our certificate, not a self-signed one.
  openssl s_client -connect "$GANETI_NODE_IP:$GANETI_RAPI_PORT" -CAfile "$GANETI_DIR/rapi-ca.pem" \
    -verify_return_error -verify_ip "$GANETI_NODE_IP" </dev/null >"$GANETI_DIR/s_client.log" 2>&1 ||
    die "RAPI does not serve the testbed certificate (see $GANETI_DIR/s_client.log)"
}

ganeti_down() {
  local names name out jobs=() j
  # GANETI_DOWN_FAST=1: skip instance removal and gnt-cluster destroy (about
  # 12 s, mostly daemon-util stopping one daemon every 2 s); the wipe below
  # ends the daemons by pid and removes the state just as well.
  if [[ ${GANETI_DOWN_FAST:-0} != 1 ]] && _gnt_holder_ok && [[ -f /var/lib/ganeti/config.data ]]; then
    names="$(timeout 30 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
      gnt-instance list --no-headers -o name 2>/dev/null)" || names=""
    for name in $names; do
      out="$(timeout 30 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
        gnt-instance remove -f --shutdown-timeout=0 --submit "$name" 2>&1)" || true
      j="$(sed -n 's/^JobID: *\([0-9]\+\).*/\1/p' <<<"$out")"
      [[ -n $j ]] && jobs+=("$j")
    done
    for j in "${jobs[@]}"; do
      timeout 60 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount gnt-job wait "$j" >/dev/null 2>&1 || true
    done
    timeout 60 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
      gnt-cluster destroy --yes-do-it >/dev/null 2>&1 || log "ganeti: gnt-cluster destroy failed; wiping instead"
  fi
  _gnt_wipe
}

ganeti_env() {
  [[ -f $GANETI_DIR/rapi-password ]] || return 0
  local pid
  pid="$(_gnt_holder_pid)" || pid=""
  cat <<EOF
export GANETI_RAPI_URL='https://$GANETI_NODE_IP:$GANETI_RAPI_PORT'
export GANETI_RAPI_CLUSTER_URL='https://$GANETI_CLUSTER_IP:$GANETI_RAPI_PORT'
export GANETI_RAPI_CA='$GANETI_DIR/rapi-ca.pem'
export GANETI_RAPI_USER='$GANETI_RAPI_USER'
export GANETI_RAPI_PASSWORD='$(cat "$GANETI_DIR/rapi-password")'
export GANETI_RAPI_RO_USER='$GANETI_RAPI_RO_USER'
export GANETI_RAPI_RO_PASSWORD='$(cat "$GANETI_DIR/rapi-ro-password")'
export GANETI_CLUSTER_CERT='/var/lib/ganeti/server.pem'
export GANETI_NODE='$GANETI_NODE'
export GANETI_NODE_IP='$GANETI_NODE_IP'
export GANETI_CLUSTER_NAME='$GANETI_CLUSTER_NAME'
export GANETI_CLUSTER_IP='$GANETI_CLUSTER_IP'
export GANETI_NETNS='$GANETI_NETNS'
export GANETI_EXEC='nsenter -t $pid --uts --net --mount'
export GANETI_OS='noop'
export GANETI_OS_SSH_KEYS_PARAM='ssh_authorized_keys'
export GANETI_HYPERVISOR='fake'
export GANETI_INSTANCE_NET='198.51.100.0/24'
export GANETI_INSTANCE_IP_FIRST='198.51.100.50'
export GANETI_INSTANCE_IP_LAST='198.51.100.99'
EOF
}
