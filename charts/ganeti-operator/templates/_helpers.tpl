{{/* The labels every object of the release carries. */}}
{{- define "ganeti-operator.labels" -}}
app.kubernetes.io/name: ganeti-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* What selects the operator's pods (manifests/webhook.yaml selects by name). */}}
{{- define "ganeti-operator.selectorLabels" -}}
app.kubernetes.io/name: ganeti-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The admin groups, system:masters included. */}}
{{- define "ganeti-operator.adminGroups" -}}
{{- $groups := .Values.adminGroups -}}
{{- if not (has "system:masters" $groups) }}{{ $groups = append $groups "system:masters" }}{{ end -}}
{{- join "," $groups -}}
{{- end }}

{{/* The admin groups as a CEL list: ['ganeti-admins', 'system:masters']. */}}
{{- define "ganeti-operator.adminGroupsCEL" -}}
{{- $quoted := list -}}
{{- range splitList "," (include "ganeti-operator.adminGroups" .) }}{{ $quoted = append $quoted (printf "'%s'" .) }}{{ end -}}
[{{ join ", " $quoted }}]
{{- end }}

{{/* The name of the Secret the chart makes for the link key when linkKeySecret is empty. */}}
{{- define "ganeti-operator.generatedLinkKeySecret" -}}
ganeti-operator-link-key
{{- end }}

{{/* Whether the chart makes the link key Secret: no linkKeySecret given, and leader
     election on or more than one replica (the operator refuses a random per-process
     key then: replicas must sign links and console tickets alike). */}}
{{- define "ganeti-operator.generateLinkKey" -}}
{{- if and (not .Values.linkKeySecret) (or .Values.leaderElection.enabled (gt (int .Values.replicas) 1)) -}}
true
{{- end -}}
{{- end }}

{{/* The link key Secret the operator reads: the given one, else the generated one when
     the chart makes it; empty for one replica without leader election. */}}
{{- define "ganeti-operator.linkKeySecret" -}}
{{- if .Values.linkKeySecret -}}
{{ .Values.linkKeySecret }}
{{- else if include "ganeti-operator.generateLinkKey" . -}}
{{ include "ganeti-operator.generatedLinkKeySecret" . }}
{{- end -}}
{{- end }}

{{/* The base64 `key` of the generated link key Secret, given the Secret as it exists in
     the cluster (`lookup`: an empty dict under `helm template` or on first install).
     An existing key is kept: a new one on every `helm upgrade` would void every
     mailed link and console ticket in flight. 64 random letters and digits (about 380
     bits; the operator needs at least 32 bytes), base64 as Secret data is. */}}
{{- define "ganeti-operator.linkKeyData" -}}
{{- $existing := .existing | default dict -}}
{{- $data := get $existing "data" | default dict -}}
{{- $key := get $data "key" | default "" -}}
{{- if $key -}}
{{ $key }}
{{- else -}}
{{ randAlphaNum 64 | b64enc }}
{{- end -}}
{{- end }}

{{/* The Service of the aggregated API compute.ganeti.dev; the API server verifies the
     serving certificate for <this>.<namespace>.svc. */}}
{{- define "ganeti-operator.computeApiService" -}}
ganeti-operator-api
{{- end }}

{{/* The TLS Secret with the compute API's serving certificate (the chart's, or the
     cert-manager Certificate's). */}}
{{- define "ganeti-operator.computeApiCertSecret" -}}
ganeti-operator-api-tls
{{- end }}

{{/* The DNS names of the compute API's Service, as a JSON list, given the namespace. */}}
{{- define "ganeti-operator.computeApiDNSNames" -}}
{{- include "ganeti-operator.serviceDNSNames" (dict "service" (include "ganeti-operator.computeApiService" .root) "namespace" .namespace) -}}
{{- end }}

{{/* The data of a chart-made serving certificate Secret (tls.crt, tls.key, ca.crt,
     base64) as YAML, given the Secret as it exists in the cluster (`lookup`: an empty
     dict under `helm template` or on first install), the DNS names (the third,
     <service>.<namespace>.svc, is the common name) and the CA's name. An existing
     complete Secret is kept: a new CA on every `helm upgrade` would leave the running
     pods with a certificate the API server no longer trusts until they restart. Else a
     new CA and a certificate for the names, valid for ten years (RSA 2048; the key is
     PKCS#1, "RSA PRIVATE KEY"). */}}
{{- define "ganeti-operator.servingCertData" -}}
{{- $existing := .existing | default dict -}}
{{- $data := get $existing "data" | default dict -}}
{{- if and (get $data "tls.crt") (get $data "tls.key") (get $data "ca.crt") -}}
tls.crt: {{ get $data "tls.crt" }}
tls.key: {{ get $data "tls.key" }}
ca.crt: {{ get $data "ca.crt" }}
{{- else -}}
{{- $ca := genCA .caName 3650 -}}
{{- $cert := genSignedCert (index .names 2) nil .names 3650 $ca -}}
tls.crt: {{ $cert.Cert | b64enc }}
tls.key: {{ $cert.Key | b64enc }}
ca.crt: {{ $ca.Cert | b64enc }}
{{- end -}}
{{- end }}

{{/* The DNS names of a Service as a JSON list, given its name and namespace. */}}
{{- define "ganeti-operator.serviceDNSNames" -}}
{{- list .service (printf "%s.%s" .service .namespace) (printf "%s.%s.svc" .service .namespace) (printf "%s.%s.svc.cluster.local" .service .namespace) | toJson -}}
{{- end }}

{{/* The TLS Secret with the webhook's serving certificate: the given one, else the one
     the chart makes. */}}
{{- define "ganeti-operator.webhookCertSecret" -}}
{{- .Values.webhook.certSecret | default "ganeti-operator-webhook-tls" -}}
{{- end }}

{{/* The pods' topologySpreadConstraints: the given ones, else (more than one replica)
     spread over nodes when the scheduler can, so one node's loss leaves a replica
     serving; ScheduleAnyway keeps a one-node cluster working. A YAML list. */}}
{{- define "ganeti-operator.topologySpreadConstraints" -}}
{{- if .Values.topologySpreadConstraints -}}
{{ toYaml .Values.topologySpreadConstraints }}
{{- else if gt (int .Values.replicas) 1 -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "ganeti-operator.selectorLabels" . | nindent 6 }}
{{- else -}}
[]
{{- end -}}
{{- end }}
