# KUBE part of scripts/testbed: sourced, defines kube_up/down/status/env.
#
# A real Kubernetes control plane on loopback: etcd (embedded), kube-apiserver
# and kube-controller-manager, plus a matching kubectl, all from one binary
# built from scripts/kube-testbed (see its README.md). No nodes, no pods run.
# Identities are static tokens, random per `up`:
#   testbed-root  (system:masters: cluster superuser, for CRDs and RBAC)
#   admin         (group ganeti-admins)
#   alice, bob    (no groups)
#   carol         (group team-a)
# Everything lives in $TESTBED_DIR/kube; the binary is cached in $TESTBED_CACHE.

# Ports asked for; a running testbed keeps the ports it was started with
# (recorded in $KUBE_STATE/ports), so `status`/`env` need no variables.
KUBE_PORT="${KUBE_PORT:-6443}"
KUBE_ETCD_PORT="${KUBE_ETCD_PORT:-2379}"
KUBE_ETCD_PEER_PORT="${KUBE_ETCD_PEER_PORT:-2380}"
KUBE_CM_PORT="${KUBE_CM_PORT:-10257}"
_KUBE_WANT_PORTS="$KUBE_PORT $KUBE_ETCD_PORT $KUBE_ETCD_PEER_PORT $KUBE_CM_PORT"
KUBE_READY_TIMEOUT="${KUBE_READY_TIMEOUT:-120}"
KUBE_STATE="$TESTBED_DIR/kube"
KUBE_SRC="$TESTBED_ROOT/scripts/kube-testbed"
KUBE_USERS=(root admin alice bob carol)

_kube_go() {
  if [[ -n ${GO:-} ]]; then echo "$GO"; elif command -v go >/dev/null; then command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go
  else die "kube: Go toolchain not found (needed to build kube-apiserver); set GO=/path/to/go"; fi
}

# Path of the cached binary for the current sources and Go toolchain.
_kube_bin_path() {
  local go hash
  go="$(_kube_go)"
  hash="$(
    cd "$KUBE_SRC" || exit 1
    { "$go" env GOVERSION; for f in go.mod go.sum $(ls ./*.go | sort); do echo "== $f"; cat "$f"; done; } | sha256sum | cut -c1-16
  )" || die "kube: cannot hash $KUBE_SRC"
  echo "$TESTBED_CACHE/kube-testbed-$hash"
}

# Build the multi-call binary into the cache when it is missing; print its path.
_kube_build() {
  local bin go kver ldflags t0 tmp
  bin="$(_kube_bin_path)"
  mkdir -p "$TESTBED_CACHE/bin"
  exec 9>"$TESTBED_CACHE/kube-testbed.lock"
  flock 9 # two concurrent `up`s must not both build
  if [[ ! -x $bin ]]; then
    go="$(_kube_go)"
    kver="$(sed -n 's,^[[:space:]]*k8s\.io/kubernetes \(v[0-9][^[:space:]]*\)$,\1,p' "$KUBE_SRC/go.mod" | head -n1)"
    [[ -n $kver ]] || die "kube: no k8s.io/kubernetes version in $KUBE_SRC/go.mod"
    local major="${kver#v}" minor
    minor="${major#*.}"; minor="${minor%%.*}"; major="${major%%.*}"
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
      ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    log "kube: building kube-testbed $kver (first time only: several minutes, ~2.5 GB RAM)"
    t0=$SECONDS
    tmp="$bin.tmp.$$"
    # A throwaway build cache (several GB that nothing reuses: the binary itself is cached).
    if ! (cd "$KUBE_SRC" && GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$TESTBED_CACHE/go-build.tmp" \
      "$go" build -mod=readonly -buildvcs=false -p 2 -trimpath -ldflags "$ldflags" -o "$tmp" .) \
      >"$TESTBED_CACHE/kube-testbed-build.log" 2>&1; then
      rm -rf "$tmp" "$TESTBED_CACHE/go-build.tmp"
      tail -n 30 "$TESTBED_CACHE/kube-testbed-build.log" >&2
      die "kube: go build failed (log: $TESTBED_CACHE/kube-testbed-build.log)"
    fi
    rm -rf "$TESTBED_CACHE/go-build.tmp"
    mv "$tmp" "$bin"
    log "kube: built $(basename "$bin") in $((SECONDS - t0))s"
    # Keep the three newest builds (other checkouts may use older sources).
    ls -t "$TESTBED_CACHE"/kube-testbed-???????????????? 2>/dev/null | tail -n +4 | xargs -r rm -f
  fi
  ln -sfn "$bin" "$TESTBED_CACHE/bin/kubectl"
  exec 9>&-
  echo "$bin"
}

# Use the ports of the running testbed if there is one, else the asked ones.
_kube_load_ports() {
  local ports="$_KUBE_WANT_PORTS"
  [[ -f $KUBE_STATE/ports ]] && ports="$(cat "$KUBE_STATE/ports")"
  read -r KUBE_PORT KUBE_ETCD_PORT KUBE_ETCD_PEER_PORT KUBE_CM_PORT <<<"$ports"
}
_kube_load_ports

_kube_kubectl() { "$TESTBED_CACHE/bin/kubectl" "$@"; }

_kube_readyz() {
  [[ -f $KUBE_STATE/token-root ]] || return 1
  curl -fsS --max-time 5 --cacert "$KUBE_STATE/ca.crt" \
    -H "Authorization: Bearer $(cat "$KUBE_STATE/token-root")" \
    "https://127.0.0.1:$KUBE_PORT/readyz" 2>/dev/null | grep -qx ok
}

# A testbed started without the aggregation layer's PKI (older scripts) counts as
# down, so `up` restarts it with the front proxy configured.
kube_status() {
  pid_alive kube-etcd && pid_alive kube-apiserver && pid_alive kube-controller-manager &&
    [[ -x $TESTBED_CACHE/bin/kubectl && -f $KUBE_STATE/tokens.csv && -f $KUBE_STATE/front-proxy-ca.crt ]] && _kube_readyz
}

_kube_stop_all() {
  stop_daemon kube-controller-manager
  stop_daemon kube-apiserver
  stop_daemon kube-etcd
  rm -rf "$KUBE_STATE"
}

kube_down() { _kube_stop_all; }

# _kube_port_free PORT: nothing listens on 127.0.0.1:PORT (or the wildcard).
_kube_port_free() {
  ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

# _daemon_wait PART LOGDIR NAME WHAT SECS CMD...: like wait_for, but fails at once
# (with the tail of LOGDIR/NAME.log) when the daemon NAME exits.
_daemon_wait() {
  local part="$1" logs="$2" name="$3" what="$4" secs="$5"; shift 5
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$name"; then
      tail -n 25 "$logs/$name.log" >&2 || true
      die "$part: $name exited while waiting for $what (log: $logs/$name.log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 25 "$logs/$name.log" >&2 || true
      die "$part: timed out after ${secs}s waiting for $what (log: $logs/$name.log)"
    fi
    sleep 0.5
  done
}

# _kube_wait NAME WHAT SECS CMD...: _daemon_wait for the control plane's daemons.
_kube_wait() { _daemon_wait kube "$KUBE_STATE" "$@"; }

_kube_pki() {
  local d="$KUBE_STATE" ec=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256)
  (
    set -e
    cd "$d"
    umask 077
    openssl genpkey "${ec[@]}" -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=ganeti-operator-testbed-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.crt 2>/dev/null
    # The aggregation layer's own CA: kube-apiserver proxies to aggregated API servers
    # with a client certificate of this CA (front-proxy-client); they trust the
    # X-Remote-User/-Group headers only from it. Separate from ca.crt, so that no
    # ordinary client certificate can pass as the front proxy.
    openssl genpkey "${ec[@]}" -out front-proxy-ca.key 2>/dev/null
    openssl req -x509 -new -key front-proxy-ca.key -sha256 -days 30 -subj "/CN=ganeti-operator-testbed-front-proxy-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out front-proxy-ca.crt 2>/dev/null
    # sign NAME SUBJECT EXTENSIONS [CA]: a key and a certificate signed by CA (default ca).
    sign() {
      local ca="${4:-ca}"
      openssl genpkey "${ec[@]}" -out "$1.key" 2>/dev/null
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -sha256 -days 30 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign front-proxy-client "/CN=front-proxy-client" "$(printf '%s\n' \
      "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth")" front-proxy-ca
    sign apiserver "/CN=kube-apiserver" "$(printf '%s\n' \
      "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1")"
    # The apiserver's client certificate towards kubelets (logs, exec, port-forward
    # on pods of a node started with `scripts/testbed node up`).
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$(printf '%s\n' \
      "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth")"
    # The controller manager runs all controllers with its own credentials.
    sign controller-manager "/O=system:masters/CN=system:kube-controller-manager" "$(printf '%s\n' \
      "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth")"
    openssl genpkey "${ec[@]}" -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    # Static tokens: token,user,uid,"groups".
    local u tok
    : >tokens.csv
    for u in "${KUBE_USERS[@]}"; do
      tok="$(openssl rand -hex 24)"
      printf '%s' "$tok" >"token-$u"
      case "$u" in
        root) echo "$tok,testbed-root,testbed-root,\"system:masters\"" ;;
        admin) echo "$tok,admin,admin,\"ganeti-admins\"" ;;
        carol) echo "$tok,carol,carol,\"team-a\"" ;;
        *) echo "$tok,$u,$u" ;;
      esac >>tokens.csv
    done
  ) || die "kube: generating certificates with openssl failed"
}

# _kube_kubeconfig FILE USER CREDENTIAL-LINES: one cluster, one user, one context.
_kube_kubeconfig() {
  local file="$1" user="$2" cred="$3"
  (umask 077 && cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: https://127.0.0.1:$KUBE_PORT
    certificate-authority-data: $(base64 -w0 <"$KUBE_STATE/ca.crt")
users:
- name: $user
  user:
$cred
contexts:
- name: $user@testbed
  context:
    cluster: testbed
    user: $user
    namespace: default
current-context: $user@testbed
EOF
  )
}

_kube_map_served() {
  _kube_kubectl --kubeconfig "$KUBE_STATE/kubeconfig-root" api-resources --api-group=admissionregistration.k8s.io -o name |
    grep -q '^mutatingadmissionpolicies\.'
}

kube_up() {
  if kube_status; then
    log "kube: already running on https://127.0.0.1:$KUBE_PORT, reusing it"
    return 0
  fi
  if [[ -d $KUBE_STATE ]] || pid_alive kube-etcd || pid_alive kube-apiserver || pid_alive kube-controller-manager; then
    log "kube: stale or unhealthy state, cleaning it"
    _kube_stop_all
  fi
  _kube_load_ports
  local bin p t0 u
  bin="$(_kube_build)"
  for p in "$KUBE_PORT" "$KUBE_ETCD_PORT" "$KUBE_ETCD_PEER_PORT" "$KUBE_CM_PORT"; do
    _kube_port_free "$p" || die "kube: port $p is already in use (another testbed or cluster?); set KUBE_PORT/KUBE_ETCD_PORT/KUBE_ETCD_PEER_PORT/KUBE_CM_PORT"
  done
  mkdir -p "$KUBE_STATE"
  echo "$KUBE_PORT $KUBE_ETCD_PORT $KUBE_ETCD_PEER_PORT $KUBE_CM_PORT" >"$KUBE_STATE/ports"
  _kube_pki
  local s="$KUBE_STATE"
  t0=$SECONDS

  start_daemon kube-etcd "$s/kube-etcd.log" "$bin" etcd --data-dir "$s/etcd" \
    --listen-client "http://127.0.0.1:$KUBE_ETCD_PORT" --listen-peer "http://127.0.0.1:$KUBE_ETCD_PEER_PORT"
  _kube_wait kube-etcd "etcd health" 60 \
    curl -fsS --max-time 3 "http://127.0.0.1:$KUBE_ETCD_PORT/health"

  start_daemon kube-apiserver "$s/kube-apiserver.log" "$bin" kube-apiserver \
    --etcd-servers="http://127.0.0.1:$KUBE_ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$KUBE_PORT" \
    --endpoint-reconciler-type=none \
    --cert-dir="$s/apiserver-certs" \
    --tls-cert-file="$s/apiserver.crt" --tls-private-key-file="$s/apiserver.key" \
    --client-ca-file="$s/ca.crt" --token-auth-file="$s/tokens.csv" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$s/sa.pub" --service-account-signing-key-file="$s/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --enable-admission-plugins=ValidatingAdmissionPolicy,MutatingAdmissionPolicy \
    --requestheader-client-ca-file="$s/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$s/front-proxy-client.crt" --proxy-client-key-file="$s/front-proxy-client.key" \
    --kubelet-client-certificate="$s/apiserver-kubelet-client.crt" --kubelet-client-key="$s/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --profiling=false
  _kube_wait kube-apiserver "kube-apiserver /readyz" "$KUBE_READY_TIMEOUT" _kube_readyz
  log "kube: apiserver ready $((SECONDS - t0))s after start (etcd included)"

  _kube_kubeconfig "$s/kubeconfig-controller-manager" system:kube-controller-manager \
    "    client-certificate: $s/controller-manager.crt
    client-key: $s/controller-manager.key"
  for u in "${KUBE_USERS[@]}"; do
    _kube_kubeconfig "$s/kubeconfig-$u" "$u" "    token: $(cat "$s/token-$u")"
  done

  start_daemon kube-controller-manager "$s/kube-controller-manager.log" "$bin" kube-controller-manager \
    --kubeconfig="$s/kubeconfig-controller-manager" \
    --authentication-kubeconfig="$s/kubeconfig-controller-manager" \
    --authorization-kubeconfig="$s/kubeconfig-controller-manager" --authentication-skip-lookup \
    --bind-address=127.0.0.1 --secure-port="$KUBE_CM_PORT" --cert-dir="$s/controller-manager-certs" \
    --leader-elect=false --use-service-account-credentials=false \
    --controllers='*,-cloud-node-lifecycle-controller,-node-ipam-controller,-node-route-controller,-service-lb-controller' \
    --service-account-private-key-file="$s/sa.key" --root-ca-file="$s/ca.crt" \
    --cluster-signing-cert-file="$s/ca.crt" --cluster-signing-key-file="$s/ca.key" \
    --service-cluster-ip-range=10.96.0.0/16 --profiling=false
  _kube_wait kube-controller-manager "kube-controller-manager /healthz" 60 \
    curl -fsS --max-time 3 --insecure "https://127.0.0.1:$KUBE_CM_PORT/healthz"

  # Smoke checks: the superuser works, the users are who they claim to be.
  _kube_kubectl --kubeconfig "$s/kubeconfig-root" get ns default >/dev/null ||
    die "kube: kubectl get ns as testbed-root failed"
  _kube_kubectl --kubeconfig "$s/kubeconfig-alice" auth whoami -o jsonpath='{.status.userInfo.username}' 2>/dev/null |
    grep -qx alice || die "kube: kubectl auth whoami as alice did not answer alice"
  # Discovery may lag /readyz by a moment on a busy machine: ask for a while.
  wait_for "the MutatingAdmissionPolicy API in discovery" 20 _kube_map_served
  # The aggregation layer: the apiserver publishes the front proxy's CA for aggregated
  # API servers (the operator's compute.ganeti.dev reads it at start).
  _kube_kubectl --kubeconfig "$s/kubeconfig-root" get configmap -n kube-system extension-apiserver-authentication \
    -o jsonpath='{.data.requestheader-client-ca-file}' 2>/dev/null | grep -q 'BEGIN CERTIFICATE' ||
    die "kube: configmap kube-system/extension-apiserver-authentication lacks requestheader-client-ca-file"
  # Keeps the ConfigMap paramKind informer of the admission policies alive whatever
  # tests delete (see the file).
  _kube_kubectl --kubeconfig "$s/kubeconfig-root" apply --server-side \
    -f "$TESTBED_ROOT/scripts/testbed.d/param-informer-keeper.yaml" >/dev/null ||
    die "kube: applying param-informer-keeper.yaml failed"
  log "kube: up on https://127.0.0.1:$KUBE_PORT in $((SECONDS - t0))s after build"
}

kube_env() {
  [[ -f $KUBE_STATE/tokens.csv ]] || return 0
  local u up
  echo "export KUBECTL='$TESTBED_CACHE/bin/kubectl'"
  echo "export KUBE_SERVER='https://127.0.0.1:$KUBE_PORT'"
  echo "export KUBE_CA_FILE='$KUBE_STATE/ca.crt'"
  echo "export FRONT_PROXY_CA_FILE='$KUBE_STATE/front-proxy-ca.crt'"
  for u in "${KUBE_USERS[@]}"; do
    up="${u^^}"
    echo "export KUBECONFIG_$up='$KUBE_STATE/kubeconfig-$u'"
    echo "export KUBE_TOKEN_$up='$(cat "$KUBE_STATE/token-$u")'"
  done
}
