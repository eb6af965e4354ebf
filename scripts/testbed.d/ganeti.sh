# GANETI part of scripts/testbed: sourced, defines ganeti_up/down/status/env.
#
# A two-node Ganeti 3.0 cluster (Debian's packages): node1 (the master, with
# RAPI) in a network namespace of its own, reachable from the root namespace
# over a veth pair; node2 in a second network namespace behind node1, with its
# own mount namespace for Ganeti's state directories. See
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
# node2: exists for node-role tests (Ganeti refuses to drain the master).
GANETI_NODE2=node2.ganeti.test
GANETI_NODE2_IP=198.51.100.11
GANETI_NETNS2="${GANETI_NETNS}2"
GANETI_NODE2_DIR="$GANETI_DIR/node2"
GANETI_VETH_TO_NODE2="${GANETI_NETNS}-n2"   # in node1's namespace
GANETI_VETH_TO_NODE1="${GANETI_NETNS2}-n1"  # in node2's namespace
# node2's node group: never chosen by an iallocator, so instances land on node1
# unless a test names node2 as pnode.
GANETI_SPARE_GROUP=spare
# Entries of /etc/ganeti that the Debian package ships; everything else there is
# cluster state and goes when the testbed wipes.
GANETI_ETC_KEEP=(kvm-ifup-os xen-ifup-os lib share)

_gnt_holder_pid() { cat "$TESTBED_DIR/pids/ganeti-holder.pid" 2>/dev/null; }
_gnt2_holder_pid() { cat "$TESTBED_DIR/pids/ganeti-node2-holder.pid" 2>/dev/null; }

# _gnt_ns_holder_ok PIDNAME NETNS: the holder runs, and sits in the namespace
# that carries our name, with a hostname of its own.
_gnt_ns_holder_ok() {
  local pid
  pid="$(cat "$TESTBED_DIR/pids/$1.pid" 2>/dev/null)" || return 1
  pid_alive "$1" || return 1
  [[ -e /run/netns/$2 ]] || return 1
  [[ "$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null)" == "$(stat -L -c %i "/run/netns/$2")" ]] || return 1
  [[ "$(readlink "/proc/$pid/ns/uts")" != "$(readlink /proc/self/ns/uts)" ]]
}
_gnt_holder_ok() { _gnt_ns_holder_ok ganeti-holder "$GANETI_NETNS"; }
_gnt2_holder_ok() { _gnt_ns_holder_ok ganeti-node2-holder "$GANETI_NETNS2"; }

# _gnt1|_gnt2 SECONDS CMD...: run a command on node1 (the master) or node2, with
# their network, hostname and files, under a timeout.
_gnt1() { local t="$1"; shift; timeout "$t" nsenter -t "$(_gnt_holder_pid)" --uts --net --mount "$@"; }
_gnt2() { local t="$1"; shift; timeout "$t" nsenter -t "$(_gnt2_holder_pid)" --uts --net --mount "$@"; }
# _gnt1_python SECONDS ARGS...: Ganeti's Python library on node1, for the steps
# its CLI would only do over ssh.
_gnt1_python() { local t="$1"; shift; _gnt1 "$t" env PYTHONPATH=/usr/share/ganeti/default /usr/bin/python3 "$@"; }

_gnt_rapi_ok() { # _gnt_rapi_ok USER PASSWORD
  curl -sf --max-time 5 --cacert "$GANETI_DIR/rapi-ca.pem" -u "$1:$2" \
    "https://$GANETI_NODE_IP:$GANETI_RAPI_PORT/2/info" >/dev/null 2>&1
}

# node1 runs the cluster and RAPI answers with the stored password.
_gnt_node1_ok() {
  [[ -f $GANETI_DIR/rapi-password && -f $GANETI_DIR/rapi-ca.pem ]] || return 1
  _gnt_holder_ok || return 1
  _gnt_rapi_ok "$GANETI_RAPI_USER" "$(cat "$GANETI_DIR/rapi-password")"
}

# node2's noded runs (its pid file is in node2's own /var/run/ganeti) and node1
# reaches it.
_gnt2_noded_ok() {
  local pid
  _gnt2_holder_ok || return 1
  pid="$(_gnt2 10 cat /var/run/ganeti/ganeti-noded.pid 2>/dev/null)" || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q ganeti-noded || return 1
  timeout 5 nsenter -t "$(_gnt_holder_pid)" --net bash -c "echo >/dev/tcp/$GANETI_NODE2_IP/1811" 2>/dev/null
}

_gnt2_in_cluster() {
  _gnt1 30 gnt-node list --no-headers -o name 2>/dev/null | grep -qx "$GANETI_NODE2"
}

ganeti_status() {
  _gnt_node1_ok && _gnt2_noded_ok && _gnt2_in_cluster
}

# _gnt_end_pids PID...: TERM, up to 5 s of grace, then KILL.
_gnt_end_pids() {
  local pid n
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 1 25); do
    n=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && n=$((n + 1)); done
    ((n)) || return 0
    sleep 0.2
  done
  kill -KILL "$@" 2>/dev/null || true
  sleep 0.2
}

# Everything node2 left: its processes (daemons, holder) by the namespace they
# run in, the veth pair, the namespace (its mounts die with the last process
# of the holder's mount namespace), hosts file and state directory. Never fails.
_gnt_node2_wipe() {
  local pids=()
  if [[ -e /run/netns/$GANETI_NETNS2 ]]; then
    mapfile -t pids < <(ip netns pids "$GANETI_NETNS2" 2>/dev/null)
  fi
  _gnt_end_pids "${pids[@]}"
  stop_daemon ganeti-node2-holder
  [[ -e /run/netns/$GANETI_NETNS ]] && { ip -n "$GANETI_NETNS" link del "$GANETI_VETH_TO_NODE2" 2>/dev/null || true; }
  [[ -e /run/netns/$GANETI_NETNS2 ]] && { ip netns del "$GANETI_NETNS2" 2>/dev/null || true; }
  rm -rf "/etc/netns/$GANETI_NETNS2" "$GANETI_NODE2_DIR"
}

# End the processes listed in /var/run/ganeti/*.pid (checked to be Ganeti's),
# then anything left inside node1's namespace (job processes, qemu), by pid.
_gnt_kill_leftovers() {
  local f pid pids=()
  for f in /var/run/ganeti/*.pid; do
    [[ -f $f ]] || continue
    pid="$(cat "$f" 2>/dev/null)" || continue
    [[ $pid =~ ^[0-9]+$ ]] || continue
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q ganeti && pids+=("$pid")
  done
  if [[ -e /run/netns/$GANETI_NETNS ]]; then
    for pid in $(ip netns pids "$GANETI_NETNS" 2>/dev/null); do pids+=("$pid"); done
  fi
  _gnt_end_pids "${pids[@]}"
}

# Remove every trace of a cluster and of the namespaces (used on stale state and
# as the last step of down). Never fails.
_gnt_wipe() {
  local f
  _gnt_node2_wipe
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
  rm -rf "$GANETI_OS_DIR" /srv/ganeti/file-storage
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
# _gnt_hosts_file NETNS: both nodes and the cluster name. Written in place (same
# inode), so a holder that already has it bind-mounted sees the change.
_gnt_hosts_file() {
  mkdir -p "/etc/netns/$1"
  cat >"/etc/netns/$1/hosts" <<EOF
127.0.0.1 localhost
$GANETI_NODE_IP $GANETI_NODE ${GANETI_NODE%%.*}
$GANETI_NODE2_IP $GANETI_NODE2 ${GANETI_NODE2%%.*}
$GANETI_CLUSTER_IP $GANETI_CLUSTER_NAME ${GANETI_CLUSTER_NAME%%.*}
EOF
}

_gnt_make_netns() {
  _gnt_hosts_file "$GANETI_NETNS"
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
    --candidate-pool-size=1 \
    "$GANETI_CLUSTER_NAME" >"$GANETI_DIR/init.log" 2>&1 ||
    { cat "$GANETI_DIR/init.log" >&2; die "gnt-cluster init failed (log: $GANETI_DIR/init.log)"; }
}

# The `file` disk template too (sparse files on node1): a diskless instance
# cannot be reinstalled, and reinstall is a user action under test. Idempotent;
# without it only the tests that need a disk fail.
_gnt_file_storage() {
  mkdir -p /srv/ganeti/file-storage
  echo /srv/ganeti/file-storage >/etc/ganeti/file-storage-paths
  timeout 60 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
    gnt-cluster modify --enabled-disk-templates=diskless,file \
    --ipolicy-disk-templates=diskless,file >"$GANETI_DIR/file-storage.log" 2>&1 ||
    log "ganeti: enabling the file disk template failed (see $GANETI_DIR/file-storage.log)"
}

# node2's network namespace, behind node1 (a veth pair between the two
# namespaces; node1 routes, and proxy-ARPs for it towards the root namespace),
# and its holder: own hostname, and own /var/lib/ganeti, /etc/ganeti,
# /var/run/ganeti and /var/log/ganeti (bind mounts in the holder's mount
# namespace only), so node2's daemons never touch node1's files.
_gnt_make_node2() {
  local d="$GANETI_NODE2_DIR" f
  mkdir -p "$d/lib" "$d/etc" "$d/run" "$d/log"
  for f in "${GANETI_ETC_KEEP[@]}"; do
    if [[ -e /etc/ganeti/$f || -L /etc/ganeti/$f ]]; then cp -a "/etc/ganeti/$f" "$d/etc/"; fi
  done
  _gnt_hosts_file "$GANETI_NETNS2"
  _gnt_hosts_file "$GANETI_NETNS" # a node1 set up before node2 existed lacks it
  ip netns add "$GANETI_NETNS2"
  ip -n "$GANETI_NETNS2" link set lo up
  ip -n "$GANETI_NETNS" link add "$GANETI_VETH_TO_NODE2" type veth peer name "$GANETI_VETH_TO_NODE1" netns "$GANETI_NETNS2"
  ip -n "$GANETI_NETNS" link set "$GANETI_VETH_TO_NODE2" up
  ip -n "$GANETI_NETNS" route add "$GANETI_NODE2_IP/32" dev "$GANETI_VETH_TO_NODE2" src "$GANETI_NODE_IP"
  ip -n "$GANETI_NETNS2" link set "$GANETI_VETH_TO_NODE1" up
  ip -n "$GANETI_NETNS2" addr add "$GANETI_NODE2_IP/32" dev "$GANETI_VETH_TO_NODE1"
  ip -n "$GANETI_NETNS2" route add "$GANETI_NODE_IP/32" dev "$GANETI_VETH_TO_NODE1" src "$GANETI_NODE2_IP"
  ip -n "$GANETI_NETNS2" route add default via "$GANETI_NODE_IP" dev "$GANETI_VETH_TO_NODE1" src "$GANETI_NODE2_IP"
  # shellcheck disable=SC2016
  start_daemon ganeti-node2-holder "$GANETI_DIR/node2-holder.log" \
    ip netns exec "$GANETI_NETNS2" unshare --uts --mount --propagation private \
    sh -c 'hostname "$1" && d="$2" &&
      mkdir -p /var/lib/ganeti /etc/ganeti /var/run/ganeti /var/log/ganeti &&
      mount --bind "$d/lib" /var/lib/ganeti && mount --bind "$d/etc" /etc/ganeti &&
      mount --bind "$d/run" /var/run/ganeti && mount --bind "$d/log" /var/log/ganeti &&
      mount --bind "$3" /etc/default/ganeti && exec sleep infinity' \
    holder "$GANETI_NODE2" "$d" "$GANETI_DIR/default-ganeti"
  wait_for "node2's namespace" 10 _gnt2_holder_ok
  wait_for "node2's hostname" 10 sh -c '[ "$(nsenter -t "$1" --uts hostname)" = "$2" ]' _ "$(_gnt2_holder_pid)" "$GANETI_NODE2"
}

# What `gnt-node add` does over ssh (bootstrap.SetupNodeDaemon): hand the new
# node the cluster's ssconf, noded certificate and HMAC key through Ganeti's own
# node-daemon-setup, which starts noded (and mond) there. Through nsenter
# instead of ssh; the secrets go through a pipe, never a file of ours.
_gnt_setup_node2() {
  _gnt2 30 /usr/lib/ganeti/ensure-dirs >"$GANETI_DIR/node2-setup.log" 2>&1 ||
    { cat "$GANETI_DIR/node2-setup.log" >&2; die "ensure-dirs on node2 failed"; }
  _gnt1_python 30 - "$GANETI_NODE2" 2>>"$GANETI_DIR/node2-setup.log" <<'EOF' |
import sys
from ganeti import constants, pathutils, serializer, ssconf, utils
store = ssconf.SimpleStore()
data = {
    constants.NDS_CLUSTER_NAME: store.GetClusterName(),
    constants.NDS_NODE_DAEMON_CERTIFICATE: utils.ReadFile(pathutils.NODED_CERT_FILE),
    constants.NDS_HMAC: utils.ReadFile(pathutils.CONFD_HMAC_KEY),
    constants.NDS_SSCONF: store.ReadAll(),
    constants.NDS_START_NODE_DAEMON: True,
    constants.NDS_NODE_NAME: sys.argv[1],
}
sys.stdout.buffer.write(serializer.DumpJson(data))
EOF
    _gnt2 60 /usr/lib/ganeti/node-daemon-setup >>"$GANETI_DIR/node2-setup.log" 2>&1 ||
    { cat "$GANETI_DIR/node2-setup.log" >&2; die "node-daemon-setup on node2 failed"; }
  wait_for "node2's noded" 30 _gnt2_noded_ok
}

# The cluster side of `gnt-node add` (OpNodeAdd, without the ssh setup its CLI
# insists on), into an unallocable node group of its own. A candidate pool of 1
# (set at init; repeated here for a cluster from before node2) keeps node2
# regular: Ganeti 3.0 otherwise promotes an undrained node to master candidate,
# even a non-master-capable one.
_gnt_join_node2() {
  log "ganeti: adding $GANETI_NODE2"
  {
    _gnt1 30 gnt-cluster modify --candidate-pool-size=1 &&
      { _gnt1 30 gnt-group list --no-headers -o name | grep -qx "$GANETI_SPARE_GROUP" ||
        _gnt1 30 gnt-group add --alloc-policy=unallocable "$GANETI_SPARE_GROUP"; } &&
      _gnt1_python 120 - "$GANETI_NODE2" "$GANETI_SPARE_GROUP" <<'EOF'
import sys
from ganeti import cli, opcodes
cli.SubmitOpCode(opcodes.OpNodeAdd(node_name=sys.argv[1], group=sys.argv[2],
                                   master_capable=False, vm_capable=True,
                                   node_setup=False))
EOF
  } >"$GANETI_DIR/node2-add.log" 2>&1 ||
    { cat "$GANETI_DIR/node2-add.log" >&2; die "adding $GANETI_NODE2 to the cluster failed"; }
}

# node2 running, in the cluster, and regular: builds, restarts or repairs
# whichever part is missing (node1 must be up).
_gnt_ensure_node2() {
  local role
  if ! _gnt2_holder_ok; then
    _gnt_node2_wipe
    _gnt_make_node2
  fi
  _gnt2_noded_ok || _gnt_setup_node2
  _gnt2_in_cluster || _gnt_join_node2
  # A test that failed half-way may have left node2 drained or offline.
  role="$(_gnt1 30 gnt-node list --no-headers -o role "$GANETI_NODE2" 2>/dev/null)" || role=""
  if [[ $role != R ]]; then
    log "ganeti: $GANETI_NODE2 has role ${role:-unknown}; making it regular again"
    _gnt1 60 gnt-node modify --drained=no --offline=no --master-candidate=no "$GANETI_NODE2" >/dev/null 2>&1 ||
      die "could not make $GANETI_NODE2 a regular node"
  fi
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
  until _gnt_node1_ok; do
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
  if _gnt_node1_ok; then
    _gnt_write_users # same passwords; repairs the file if someone changed it
    _gnt_ensure_node2
    _gnt_file_storage
    log "ganeti: reusing the running cluster"
    return 0
  fi
  if _gnt_try_restart; then
    _gnt_ensure_node2
    _gnt_file_storage
    log "ganeti: restarted the daemons of the existing cluster"
    return 0
  fi
  if [[ -e /run/netns/$GANETI_NETNS || -e /etc/netns/$GANETI_NETNS || -e /run/netns/$GANETI_NETNS2 || -e /etc/netns/$GANETI_NETNS2 || -f /var/lib/ganeti/config.data || -d /var/run/ganeti || -d $GANETI_DIR || -f $TESTBED_DIR/pids/ganeti-holder.pid ]]; then
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
  # and friends, with the whole cluster stopped). Only the master serves RAPI:
  # swap the file and restart ganeti-rapi (before node2 joins, so it needs no
  # copy).
  timeout 60 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
    /usr/lib/ganeti/daemon-util stop ganeti-rapi >/dev/null 2>&1 || true
  install -m 440 -o gnt-rapi -g gnt-masterd "$GANETI_DIR/rapi.pem" /var/lib/ganeti/rapi.pem
  timeout 60 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
    /usr/lib/ganeti/daemon-util start ganeti-rapi >"$GANETI_DIR/rapi-restart.log" 2>&1 ||
    { cat "$GANETI_DIR/rapi-restart.log" >&2; die "could not restart ganeti-rapi"; }
  wait_for "Ganeti RAPI on https://$GANETI_NODE_IP:$GANETI_RAPI_PORT" 60 _gnt_node1_ok
  # ganeti-rapi must serve our certificate, not a self-signed one.
  openssl s_client -connect "$GANETI_NODE_IP:$GANETI_RAPI_PORT" -CAfile "$GANETI_DIR/rapi-ca.pem" \
    -verify_return_error -verify_ip "$GANETI_NODE_IP" </dev/null >"$GANETI_DIR/s_client.log" 2>&1 ||
    die "RAPI does not serve the testbed certificate (see $GANETI_DIR/s_client.log)"
  _gnt_ensure_node2
  _gnt_file_storage
}

ganeti_down() {
  local names name out jobs=() j
  # Ganeti's state is the machine's, not this testbed dir's: a `down` of a testbed
  # dir that never brought Ganeti up (say a second one with other ports, for kube
  # and smtp only) must leave another dir's cluster alone. `up` still wipes stale
  # state it finds.
  if [[ ! -d $GANETI_DIR ]]; then
    log "ganeti: $TESTBED_DIR never brought Ganeti up; leaving the machine's cluster alone"
    return 0
  fi
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
    # destroy refuses while nodes other than the master are in the cluster.
    if _gnt2_in_cluster; then
      _gnt1 60 gnt-node remove "$GANETI_NODE2" >/dev/null 2>&1 || log "ganeti: removing $GANETI_NODE2 failed"
    fi
    timeout 60 nsenter -t "$(_gnt_holder_pid)" --uts --net --mount \
      gnt-cluster destroy --yes-do-it >/dev/null 2>&1 || log "ganeti: gnt-cluster destroy failed; wiping instead"
  fi
  _gnt_wipe
}

ganeti_env() {
  [[ -f $GANETI_DIR/rapi-password ]] || return 0
  local pid pid2
  pid="$(_gnt_holder_pid)" || pid=""
  pid2="$(_gnt2_holder_pid)" || pid2=""
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
export GANETI_NODE2='$GANETI_NODE2'
export GANETI_NODE2_IP='$GANETI_NODE2_IP'
export GANETI_NODE2_EXEC='nsenter -t $pid2 --uts --net --mount'
export GANETI_NODE2_GROUP='$GANETI_SPARE_GROUP'
export GANETI_OS='noop'
export GANETI_OS_SSH_KEYS_PARAM='ssh_authorized_keys'
export GANETI_HYPERVISOR='fake'
export GANETI_INSTANCE_NET='198.51.100.0/24'
export GANETI_INSTANCE_IP_FIRST='198.51.100.50'
export GANETI_INSTANCE_IP_LAST='198.51.100.99'
EOF
}
