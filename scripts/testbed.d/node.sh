# NODE part of scripts/testbed: sourced, defines node_up/down/status/env/smoke.
#
# A real Kubernetes node for the testbed's apiserver, started only on demand
# (`scripts/testbed node up`; plain `scripts/testbed up` never starts it):
#   containerd (Debian's) + runc + CNI plugins (bridge, host-local),
#   kubelet, kube-proxy (iptables mode) and kube-scheduler from the kube-testbed
#   binary (same release as the apiserver),
#   a pause image built here (static C, Debian's gcc) and a busybox image
#   (Debian's busybox-static), both imported as OCI archives: no registry.
# Pods get 10.244.0.0/24 on the bridge tbnode0 (gateway 10.244.0.1, masquerade
# to the outside), reach Ganeti's RAPI over the host's routes, the host's
# loopback-only SMTP server at the gateway address through a DNAT to 127.0.0.1
# (route_localnet on the bridge only), and the apiserver through the
# `kubernetes` Service (a socat relay on the gateway address).
# State lives in $TESTBED_DIR/node; see README.md in this folder.

NODE_NAME="${NODE_NAME:-testbed-node}"
NODE_BRIDGE="${NODE_BRIDGE:-tbnode0}"
NODE_POD_CIDR="${NODE_POD_CIDR:-10.244.0.0/24}"
NODE_GATEWAY="${NODE_GATEWAY:-10.244.0.1}"
NODE_READY_TIMEOUT="${NODE_READY_TIMEOUT:-120}"
NODE_STATE="$TESTBED_DIR/node"
NODE_SOCK="$NODE_STATE/containerd/containerd.sock"
NODE_PAUSE_IMAGE="localhost/ganeti-testbed/pause:1"
NODE_BUSYBOX_IMAGE="localhost/ganeti-testbed/busybox:1"
NODE_RULE_COMMENT="ganeti-testbed-node"
NODE_CNI_NETWORK="ganeti-testbed-node"
NODE_DAEMONS=(node-containerd node-kubelet node-kube-proxy node-kube-scheduler node-apiserver-relay)

_node_kubectl() { "$TESTBED_CACHE/bin/kubectl" --kubeconfig "$KUBE_STATE/kubeconfig-root" "$@"; }
_node_ctr() { ctr --address "$NODE_SOCK" -n k8s.io "$@"; }

# Host services on 127.0.0.1 that pods reach at $NODE_GATEWAY:<same port>
# (the apiserver has a relay of its own, see _node_apiserver_service).
_node_host_ports() { echo "$SMTP_PORT"; }

node_status() {
  local d
  for d in "${NODE_DAEMONS[@]}"; do pid_alive "$d" || return 1; done
  [[ -f $KUBE_STATE/kubeconfig-root ]] || return 1
  # A killed daemon may linger as a zombie (pid_alive); ask the live ones.
  curl -fsS --max-time 3 http://127.0.0.1:10248/healthz >/dev/null 2>&1 || return 1
  _node_ctr version >/dev/null 2>&1 || return 1
  [[ "$(_node_kubectl get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

node_env() {
  [[ -f $NODE_STATE/up ]] || return 0
  cat <<EOF
export NODE_NAME='$NODE_NAME'
export NODE_GATEWAY='$NODE_GATEWAY'
export NODE_POD_CIDR='$NODE_POD_CIDR'
export NODE_CONTAINERD_SOCK='$NODE_SOCK'
export NODE_BUSYBOX_IMAGE='$NODE_BUSYBOX_IMAGE'
export NODE_PAUSE_IMAGE='$NODE_PAUSE_IMAGE'
export NODE_SMTP_HOST='$NODE_GATEWAY'
EOF
}

# _node_need CMD PACKAGE: a Debian package the node needs is installed.
_node_need() {
  command -v "$1" >/dev/null || [[ -x $1 ]] || die "node: $1 is missing (apt-get install $2; scripts/install-deps --node)"
}

# _node_oci_archive REF ROOTFS OUT CONFIG-JSON: an OCI image layout (one
# uncompressed layer: ROOTFS) as a tar that `ctr images import` takes.
_node_oci_archive() {
  local ref="$1" rootfs="$2" out="$3" cfg="$4" work ldig lsize cdig csize mdig msize
  work="$(mktemp -d)"
  mkdir -p "$work/blobs/sha256"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" .
  ldig="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"; lsize="$(stat -c %s "$work/layer.tar")"
  mv "$work/layer.tar" "$work/blobs/sha256/$ldig"
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$cfg" "$ldig" >"$work/config.json"
  cdig="$(sha256sum "$work/config.json" | cut -d' ' -f1)"; csize="$(stat -c %s "$work/config.json")"
  mv "$work/config.json" "$work/blobs/sha256/$cdig"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cdig" "$csize" "$ldig" "$lsize" >"$work/manifest.json"
  mdig="$(sha256sum "$work/manifest.json" | cut -d' ' -f1)"; msize="$(stat -c %s "$work/manifest.json")"
  mv "$work/manifest.json" "$work/blobs/sha256/$mdig"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$mdig" "$msize" "$ref" "${ref##*:}" >"$work/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf "$out" oci-layout index.json blobs
  rm -rf "$work"
}

# The two images, built once per input into $TESTBED_CACHE/node-images.
_node_images() {
  local dir="$TESTBED_CACHE/node-images" src="$TESTBED_ROOT/scripts/testbed.d/node/pause.c" h root a
  mkdir -p "$dir"
  h="$(sha256sum <"$src" | cut -c1-12)"
  if [[ ! -f $dir/pause-$h.tar ]]; then
    root="$(mktemp -d)"
    gcc -static -Os -s -o "$root/pause" "$src" || die "node: building pause.c failed (gcc, libc6-dev)"
    _node_oci_archive "$NODE_PAUSE_IMAGE" "$root" "$dir/pause-$h.tar" '{"Entrypoint":["/pause"]}'
    rm -rf "$root"
  fi
  ln -sfn "pause-$h.tar" "$dir/pause.tar"
  # busybox's own TLS shares no cipher with Ganeti's RAPI; its wget uses an
  # `openssl` on PATH instead, so Debian's openssl and its libraries come along.
  h="$(cat /bin/busybox /usr/bin/openssl | sha256sum | cut -c1-12)"
  if [[ ! -f $dir/busybox-$h.tar ]]; then
    root="$(mktemp -d)"
    mkdir -p "$root/bin" "$root/tmp" "$root/etc"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -s busybox "$root/bin/$a"; done
    cp /usr/bin/openssl "$root/bin/openssl"
    for a in $(ldd /usr/bin/openssl | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$a")"
      cp -L "$a" "$root$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    _node_oci_archive "$NODE_BUSYBOX_IMAGE" "$root" "$dir/busybox-$h.tar" \
      '{"Cmd":["/bin/sh"],"Env":["PATH=/bin"],"WorkingDir":"/"}'
    rm -rf "$root"
  fi
  ln -sfn "busybox-$h.tar" "$dir/busybox.tar"
  # Keep only the images now linked.
  find "$dir" -maxdepth 1 -type f -name '*.tar' ! -name "$(readlink "$dir/pause.tar")" \
    ! -name "$(readlink "$dir/busybox.tar")" -delete
}

# Client certificates of the cluster CA for the node's components.
_node_pki() {
  local s="$NODE_STATE/pki" name subj
  mkdir -p "$s"
  for name in kubelet kube-proxy kube-scheduler; do
    case $name in
      kubelet) subj="/O=system:nodes/CN=system:node:$NODE_NAME" ;;
      kube-proxy) subj="/CN=system:kube-proxy" ;;
      kube-scheduler) subj="/CN=system:kube-scheduler" ;;
    esac
    (
      set -e
      umask 077
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$s/$name.key" 2>/dev/null
      openssl req -new -key "$s/$name.key" -subj "$subj" -out "$s/$name.csr" 2>/dev/null
      printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=clientAuth" >"$s/$name.ext"
      openssl x509 -req -in "$s/$name.csr" -CA "$KUBE_STATE/ca.crt" -CAkey "$KUBE_STATE/ca.key" \
        -CAcreateserial -CAserial "$s/ca.srl" -sha256 -days 30 -extfile "$s/$name.ext" -out "$s/$name.crt" 2>/dev/null
      rm -f "$s/$name.csr" "$s/$name.ext"
    ) || die "node: signing the $name certificate failed"
    _kube_kubeconfig "$NODE_STATE/kubeconfig-$name" "$name" "    client-certificate: $s/$name.crt
    client-key: $s/$name.key"
  done
}

_node_configs() {
  local s="$NODE_STATE"
  mkdir -p "$s/containerd" "$s/cni/net.d" "$s/cni/ipam" "$s/kubelet" "$s/pod-logs"
  cat >"$s/containerd/config.toml" <<EOF
version = 2
root = "$s/containerd/root"
state = "$s/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$NODE_SOCK"
[ttrpc]
  address = "$NODE_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # These machines drop CAP_SYS_RESOURCE from every bounding set, so no process
  # may lower its oom_score_adj below its parent's; the kubelet asks -998 for
  # sandboxes and runc then fails ("failed to update /proc/self/oom_score_adj:
  # Permission denied"). Clamp to what is allowed, as rootless setups do.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$s/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
EOF
  cat >"$s/cni/net.d/10-testbed.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NODE_CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$s/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
  cat >"$s/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine runs cgroup v1 (hybrid); kubelet 1.36 refuses it unless told.
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$NODE_SOCK
podLogsDir: $s/pod-logs
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $KUBE_STATE/ca.crt
authorization:
  mode: Webhook
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
resolvConf: /etc/resolv.conf
# A shared test machine: never evict or garbage-collect images for its disk.
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podCIDR: $NODE_POD_CIDR
maxPods: 50
serializeImagePulls: false
EOF
  cat >"$s/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $s/kubeconfig-kube-proxy
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $NODE_POD_CIDR
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# NodePorts only on the node's own address, not on every veth of the machine.
nodePortAddresses: [primary]
# Leave the machine's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
iptables:
  # No NodePorts on 127.0.0.1: that would set route_localnet on every interface.
  localhostNodePorts: false
EOF
}

# The bridge, with the gateway address, before the first pod: the DNAT for the
# host's loopback services needs it (the CNI bridge plugin reuses it).
_node_network() {
  local p
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge || die "node: cannot create bridge $NODE_BRIDGE"
  fi
  ip addr replace "$NODE_GATEWAY/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # Saved once, restored by down.
  [[ -f $NODE_STATE/ip_forward.saved ]] || cat /proc/sys/net/ipv4/ip_forward >"$NODE_STATE/ip_forward.saved"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  [[ -w /proc/sys/net/bridge/bridge-nf-call-iptables ]] && echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  echo 1 >"/proc/sys/net/ipv4/conf/$NODE_BRIDGE/route_localnet"
  for p in $(_node_host_ports); do
    iptables -t nat -C PREROUTING -i "$NODE_BRIDGE" -d "$NODE_GATEWAY" -p tcp --dport "$p" \
      -m comment --comment "$NODE_RULE_COMMENT" -j DNAT --to-destination "127.0.0.1:$p" 2>/dev/null ||
      iptables -t nat -I PREROUTING -i "$NODE_BRIDGE" -d "$NODE_GATEWAY" -p tcp --dport "$p" \
        -m comment --comment "$NODE_RULE_COMMENT" -j DNAT --to-destination "127.0.0.1:$p" ||
      die "node: iptables DNAT for port $p failed"
  done
}

_node_unnetwork() {
  local rule
  # Our DNAT rules, by their comment.
  while read -r rule; do
    [[ -n $rule ]] || continue
    eval "iptables -t nat ${rule/-A /-D }" 2>/dev/null || true
  done < <(iptables -t nat -S PREROUTING 2>/dev/null | grep -- "--comment $NODE_RULE_COMMENT" || true)
  # Masquerade chains the bridge plugin left for pods that were never torn down
  # (its rules carry the network's name in a comment).
  local chain
  while read -r rule; do
    [[ -n $rule ]] || continue
    eval "iptables -t nat ${rule/-A /-D }" 2>/dev/null || true
  done < <(iptables -t nat -S POSTROUTING 2>/dev/null | grep -F "name: \\\"$NODE_CNI_NETWORK\\\"" || true)
  for chain in $(iptables -t nat -S 2>/dev/null | grep -F "name: \\\"$NODE_CNI_NETWORK\\\"" |
    sed -n 's/^-A \(CNI-[^ ]*\) .*/\1/p' | sort -u); do
    iptables -t nat -F "$chain" 2>/dev/null || true
    iptables -t nat -X "$chain" 2>/dev/null || true
  done
  # The chains the kubelet keeps (KUBE-FIREWALL, KUBE-KUBELET-CANARY, ...) and any
  # kube-proxy left: only this node creates KUBE-* chains on the machine.
  local ipt table
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle; do
      while read -r rule; do
        if [[ -n $rule ]]; then eval "$ipt -t $table ${rule/-A /-D }" 2>/dev/null || true; fi
      done < <("$ipt" -t "$table" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-' || true)
      for chain in $("$ipt" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  if [[ -f $NODE_STATE/ip_forward.saved ]]; then
    cat "$NODE_STATE/ip_forward.saved" >/proc/sys/net/ipv4/ip_forward || true
  fi
}

# In-cluster clients (KUBERNETES_SERVICE_HOST=10.96.0.1:443) reach the apiserver,
# which listens on 127.0.0.1 only and was started with
# --endpoint-reconciler-type=none: a relay (socat) on the gateway address, and
# the `kubernetes` Service's endpoints pointing at it. kube-proxy's DNAT to the
# endpoint happens in the same nat pass as a DNAT to 127.0.0.1 would, so a
# listener is needed rather than another rule.
_node_apiserver_service() {
  _node_need socat socat
  start_daemon node-apiserver-relay "$NODE_STATE/node-apiserver-relay.log" \
    socat "TCP-LISTEN:$KUBE_PORT,bind=$NODE_GATEWAY,fork,reuseaddr" "TCP:127.0.0.1:$KUBE_PORT"
  _node_kubectl apply -f - >/dev/null <<EOF || die "node: cannot publish the kubernetes Service's endpoints"
apiVersion: v1
kind: Endpoints
metadata:
  name: kubernetes
  namespace: default
  labels: {endpointslice.kubernetes.io/skip-mirror: "true"}
subsets:
- addresses: [{ip: $NODE_GATEWAY}]
  ports: [{name: https, port: $KUBE_PORT, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: testbed-node}
addressType: IPv4
endpoints:
- addresses: [$NODE_GATEWAY]
  conditions: {ready: true}
ports: [{name: https, port: $KUBE_PORT, protocol: TCP}]
EOF
}

# Wait until the apiserver lists the node as Ready.
_node_ready() {
  [[ "$(_node_kubectl get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

# _node_wait NAME WHAT SECS CMD...: _daemon_wait (kube.sh) for the node's daemons.
_node_wait() { _daemon_wait node "$NODE_STATE" "$@"; }

node_up() {
  kube_status || die "node: the testbed's apiserver is not up (scripts/testbed up)"
  if node_status; then
    log "node: $NODE_NAME already Ready, reusing it"
    return 0
  fi
  if [[ -d $NODE_STATE ]]; then
    log "node: stale or unhealthy node state, cleaning it"
    node_down
  fi
  _node_need containerd containerd
  _node_need containerd-shim-runc-v2 containerd
  _node_need runc runc
  _node_need ctr containerd
  _node_need /usr/lib/cni/bridge containernetworking-plugins
  _node_need iptables iptables
  _node_need gcc gcc
  _node_need /bin/busybox busybox-static
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || die "node: libc6-dev is missing (static pause)"
  local bin t0 s="$NODE_STATE"
  t0=$SECONDS
  # An apiserver started by an older kube.sh has no kubelet client certificate.
  if ! tr '\0' ' ' 2>/dev/null <"/proc/$(cat "$TESTBED_DIR/pids/kube-apiserver.pid")/cmdline" |
    grep -q -- --kubelet-client-certificate; then
    log "node: WARNING: the apiserver runs without --kubelet-client-certificate (started by an older" \
      "scripts/testbed): kubectl logs/exec on this node's pods will fail until 'scripts/testbed down kube && scripts/testbed up'"
  fi
  bin="$(_kube_build)"
  "$bin" kubelet --version >/dev/null 2>&1 || die "node: $bin has no kubelet (stale kube-testbed build?)"
  mkdir -p "$s"
  _node_images
  _node_pki
  _node_configs
  _node_network

  start_daemon node-containerd "$s/node-containerd.log" containerd --config "$s/containerd/config.toml"
  _node_wait node-containerd "containerd's socket" 30 _node_ctr version
  _node_ctr images import "$TESTBED_CACHE/node-images/pause.tar" >/dev/null ||
    die "node: importing the pause image failed"
  _node_ctr images import "$TESTBED_CACHE/node-images/busybox.tar" >/dev/null ||
    die "node: importing the busybox image failed"
  # The kubelet must never garbage-collect the sandbox image.
  _node_ctr images label "$NODE_PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true

  # --containerd (deprecated, for cAdvisor's container stats): else it dials the
  # machine's /run/containerd/containerd.sock, which may be another containerd.
  start_daemon node-kubelet "$s/node-kubelet.log" "$bin" kubelet \
    --config "$s/kubelet/config.yaml" --kubeconfig "$s/kubeconfig-kubelet" \
    --root-dir "$s/kubelet/root" --cert-dir "$s/kubelet/pki" \
    --hostname-override "$NODE_NAME" ${NODE_IP:+--node-ip "$NODE_IP"} \
    --containerd "$NODE_SOCK" --v=1
  start_daemon node-kube-proxy "$s/node-kube-proxy.log" "$bin" kube-proxy --config "$s/kube-proxy.yaml" --v=1
  start_daemon node-kube-scheduler "$s/node-kube-scheduler.log" "$bin" kube-scheduler \
    --kubeconfig "$s/kubeconfig-kube-scheduler" \
    --authentication-kubeconfig "$s/kubeconfig-kube-scheduler" \
    --authorization-kubeconfig "$s/kubeconfig-kube-scheduler" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=10259 --v=1
  _node_apiserver_service
  _node_wait node-kubelet "node $NODE_NAME Ready" "$NODE_READY_TIMEOUT" _node_ready
  _node_wait node-kube-proxy "kube-proxy healthz" 30 curl -fsS --max-time 3 http://127.0.0.1:10256/healthz
  touch "$s/up"
  log "node: $NODE_NAME Ready in $((SECONDS - t0))s (kubelet, containerd, kube-proxy, kube-scheduler)"
}

node_down() {
  local s="$NODE_STATE" deadline pid f m
  [[ -d $s ]] || return 0
  # The node's pods go from the API (a dead kubelet would leave them behind), and
  # a live kubelet tears them down (CNI DEL frees addresses and rules).
  if [[ -f $KUBE_STATE/kubeconfig-root ]] && kube_status; then
    _node_kubectl delete pods -A --field-selector "spec.nodeName=$NODE_NAME" \
      --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    if pid_alive node-kubelet; then
      deadline=$((SECONDS + 30))
      while ((SECONDS < deadline)) && _node_ctr tasks ls 2>/dev/null | awk '$3 == "RUNNING" {f=1} END {exit !f}'; do
        sleep 0.5
      done
    fi
  fi
  # TERM to all four at once (each takes seconds to exit), then stop_daemon.
  local had_proxy=""
  pid_alive node-kube-proxy && had_proxy=1
  for f in node-kube-scheduler node-apiserver-relay node-kubelet node-kube-proxy; do
    if pid_alive "$f"; then kill -TERM -- "-$(cat "$TESTBED_DIR/pids/$f.pid")" 2>/dev/null || true; fi
  done
  if [[ -f $KUBE_STATE/kubeconfig-root ]] && kube_status; then
    _node_kubectl delete -n default endpointslice kubernetes --ignore-not-found >/dev/null 2>&1 || true
    _node_kubectl delete -n default endpoints kubernetes --ignore-not-found >/dev/null 2>&1 || true
  fi
  for f in node-kube-scheduler node-apiserver-relay node-kubelet node-kube-proxy; do stop_daemon "$f"; done
  [[ -z $had_proxy ]] || "$(_kube_bin_path)" kube-proxy --cleanup >/dev/null 2>&1 || true
  # Whatever still runs: kill the tasks, then the shims of our containerd. Note
  # the pods' network namespaces first: CRI removes one only with its sandbox,
  # which the kubelet does a while after stopping it (CNI DEL leaves just lo).
  local netns=""
  if pid_alive node-containerd; then
    netns="$(for f in $(_node_ctr containers ls -q 2>/dev/null); do _node_ctr containers info "$f" 2>/dev/null; done |
      { grep -o '/run/netns/cni-[0-9a-f-]*' || true; } | sort -u)"
    for f in $(_node_ctr tasks ls -q 2>/dev/null); do _node_ctr tasks kill -s KILL "$f" >/dev/null 2>&1 || true; done
  fi
  stop_daemon node-containerd
  for pid in $(pgrep -f "^/usr/bin/containerd-shim-runc-v2 .*-address $NODE_SOCK( |\$)" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # runc's records of our containers (their processes died with the shims).
  while read -r f _ _ m _; do
    if [[ $m == "$s/"* ]]; then runc --root /run/containerd/runc/k8s.io delete --force "$f" >/dev/null 2>&1 || true; fi
  done < <(runc --root /run/containerd/runc/k8s.io list 2>/dev/null | tail -n +2)
  # Pod network namespaces CRI did not remove: those its sandboxes named, and
  # (containerd already dead) those with an address of our pod range.
  for f in $netns; do [[ -e $f ]] && ip netns del "${f##*/}" 2>/dev/null; done
  for f in /run/netns/cni-*; do
    [[ -e $f ]] || continue
    if ip -n "${f##*/}" -4 -o addr show 2>/dev/null | grep -qF " ${NODE_POD_CIDR%.*}."; then
      ip netns del "${f##*/}" 2>/dev/null || true
    fi
  done
  _node_delete_node
  _node_unnetwork
  # Mounts of the kubelet (volumes) and containerd (rootfs, shm), deepest first.
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
    awk -v p="$s/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  rm -rf "$s"
}

_node_delete_node() {
  if [[ -f $KUBE_STATE/kubeconfig-root ]] && kube_status; then
    _node_kubectl delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
}

# node_smoke: a busybox web pod behind a ClusterIP Service, and a client pod
# that must reach Ganeti's RAPI, the SMTP server and that Service. Fails loudly
# (with the client's output and the pods' events) when any of them does not.
# RAPI: NODE_SMOKE_RAPI_URL (default the testbed's node1) with the read-only user.
node_smoke() {
  node_status || die "node: $NODE_NAME is not up and Ready (scripts/testbed node up)"
  local ns=testbed-node-smoke t0=$SECONDS rapi_url rapi_auth phase svc_ip log uid rc=0
  rapi_url="${NODE_SMOKE_RAPI_URL:-https://$GANETI_NODE_IP:$GANETI_RAPI_PORT}"
  rapi_auth="${NODE_SMOKE_RAPI_AUTH:-}"
  if [[ -z $rapi_auth && -f $GANETI_DIR/rapi-ro-password ]]; then
    rapi_auth="$GANETI_RAPI_RO_USER:$(cat "$GANETI_DIR/rapi-ro-password")"
  fi
  [[ -n $rapi_auth ]] || die "node smoke: no RAPI credentials (Ganeti part down? set NODE_SMOKE_RAPI_AUTH=user:password)"
  _node_kubectl delete namespace "$ns" --ignore-not-found --wait=true >/dev/null 2>&1 || true
  _node_kubectl create namespace "$ns" >/dev/null || die "node smoke: cannot create namespace $ns"
  wait_for "the default ServiceAccount in $ns" 30 _node_kubectl get -n "$ns" serviceaccount default
  _node_kubectl apply -n "$ns" -f - >/dev/null <<EOF2 || die "node smoke: applying the web pod and Service failed"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: smoke-web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: $NODE_BUSYBOX_IMAGE
    command: ["sh", "-c", "mkdir -p /www && echo smoke-ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{containerPort: 8080}]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: smoke-web}
  ports: [{port: 80, targetPort: 8080}]
EOF2
  _node_kubectl wait -n "$ns" --for=condition=Ready pod/web --timeout=90s >/dev/null || {
    _node_kubectl describe -n "$ns" pod/web >&2 || true
    die "node smoke: the busybox pod did not become Running and Ready"
  }
  log "node smoke: busybox pod Running and Ready ($((SECONDS - t0))s)"
  svc_ip="$(_node_kubectl get -n "$ns" service web -o jsonpath='{.spec.clusterIP}')"
  # In a Secret, so that `kubectl describe` below does not print the password.
  _node_kubectl create secret generic -n "$ns" rapi --from-literal=auth="$rapi_auth" >/dev/null ||
    die "node smoke: cannot create the RAPI credentials Secret"
  # The client: each check prints one line; any failure fails the pod.
  _node_kubectl apply -n "$ns" -f - >/dev/null <<EOF2 || die "node smoke: applying the client pod failed"
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: check
    image: $NODE_BUSYBOX_IMAGE
    env:
    - {name: RAPI, value: "$rapi_url"}
    - {name: RAPI_AUTH, valueFrom: {secretKeyRef: {name: rapi, key: auth}}}
    - {name: SMTP, value: "$NODE_GATEWAY $SMTP_PORT"}
    - {name: SVC, value: "$svc_ip"}
    command:
    - sh
    - -c
    - |
      ok=0
      echo "pod ip: \$(hostname -i)"
      # (no wget -T: Debian's busybox-static 1.35 wget segfaults on it)
      v="\$(timeout 15 wget -q -O- --no-check-certificate "\${RAPI%%//*}//\$RAPI_AUTH@\${RAPI#*//}/version")" &&
        [ "\$v" = 2 ] && echo "RAPI \$RAPI/version: \$v" || { echo "FAIL: RAPI \$RAPI/version (got '\$v')"; ok=1; }
      b="\$(printf 'QUIT\r\n' | nc -w 10 \$SMTP | head -n1)"
      case "\$b" in 220*) echo "SMTP \$SMTP: \$b";; *) echo "FAIL: SMTP \$SMTP (got '\$b')"; ok=1;; esac
      w="\$(timeout 15 wget -q -O- "http://\$SVC/")" && [ "\$w" = smoke-ok ] &&
        echo "Service http://\$SVC/: \$w" || { echo "FAIL: Service http://\$SVC/ (got '\$w')"; ok=1; }
      K8S="\$KUBERNETES_SERVICE_HOST:\$KUBERNETES_SERVICE_PORT"
      k="\$(timeout 15 wget -q -O- --no-check-certificate "https://\$K8S/readyz")" && [ "\$k" = ok ] &&
        echo "apiserver https://\$K8S/readyz: \$k" || { echo "FAIL: apiserver https://\$K8S/readyz (got '\$k')"; ok=1; }
      exit \$ok
EOF2
  for _ in $(seq 1 120); do
    phase="$(_node_kubectl get -n "$ns" pod client -o jsonpath='{.status.phase}' 2>/dev/null)"
    [[ $phase == Succeeded || $phase == Failed ]] && break
    sleep 0.5
  done
  # The container's log, read on the node (no kubelet client certificate needed).
  uid="$(_node_kubectl get -n "$ns" pod client -o jsonpath='{.metadata.uid}' 2>/dev/null)"
  log="$(sed -E 's/^[^ ]+ (stdout|stderr) [FP] //' "$NODE_STATE/pod-logs/${ns}_client_$uid/check/0.log" 2>/dev/null)"
  printf '%s\n' "$log" | sed 's/^/[node smoke] /' >&2
  if [[ $phase != Succeeded ]]; then
    _node_kubectl describe -n "$ns" pod client >&2 || true
    rc=1
  fi
  _node_kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  ((rc == 0)) || die "node smoke: the client pod ended in phase '${phase:-unknown}' (see above)"
  log "node smoke: RAPI, SMTP, a ClusterIP Service and the apiserver reached from a pod ($((SECONDS - t0))s)"
}

# node_load FILE [NAME]: import an image archive (OCI layout or `docker save`
# tar) into the node's containerd, as a registry-less `kind load`. Without NAME
# the archive must name its image (io.containerd.image.name or a docker
# RepoTags); with NAME its index is stored under that name. Pods then use the
# name with a tag other than `latest` (pull policy IfNotPresent).
node_load() {
  local file="$1" name="${2:-}" out
  [[ -f $file ]] || die "node load: no such file: $file"
  node_status || die "node: $NODE_NAME is not up and Ready (scripts/testbed node up)"
  out="$(_node_ctr images import ${name:+--index-name "$name"} "$file" 2>&1)" ||
    die "node load: ctr images import failed: $out"
  [[ -n $out ]] && printf '%s\n' "$out" >&2
  if [[ -n $name ]]; then
    _node_ctr images ls -q | grep -qxF "$name" || die "node load: $name is not among the node's images"
  fi
  log "node load: imported $file${name:+ as $name}"
}

