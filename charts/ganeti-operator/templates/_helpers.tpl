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
