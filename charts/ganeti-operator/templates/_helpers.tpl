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
