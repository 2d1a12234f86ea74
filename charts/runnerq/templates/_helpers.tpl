{{/*
Names and labels only. Objects are named "<full name>-<component>"; labels follow the
recommended app.kubernetes.io set.
*/}}

{{/* The chart's name (nameOverride). */}}
{{- define "runnerq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: the release name, plus the chart's name unless the release name holds it. */}}
{{- define "runnerq.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator's objects: Deployment, ClusterRole, Role, Service. */}}
{{- define "runnerq.operator.fullname" -}}
{{- printf "%s-operator" (include "runnerq.fullname" .) }}
{{- end }}

{{/* The kopf peering name (operator.peering.name, default: the operator's full name). */}}
{{- define "runnerq.operator.peeringName" -}}
{{- default (include "runnerq.operator.fullname" .) .Values.operator.peering.name }}
{{- end }}

{{/* The operator's kopf priority as RUNNERQ_OPERATOR_PRIORITY reads it: "auto" or an
integer (Helm reads numbers as floats: 1000000 would print as 1e+06). */}}
{{- define "runnerq.operator.peeringPriority" -}}
{{- $priority := .Values.operator.peering.priority }}
{{- if kindIs "string" $priority }}{{ $priority }}{{ else }}{{ int64 $priority }}{{ end }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "runnerq.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runnerq.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* helm.sh/chart label value. */}}
{{- define "runnerq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "runnerq.labels" -}}
helm.sh/chart: {{ include "runnerq.chart" . }}
{{ include "runnerq.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: runnerq
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the release. */}}
{{- define "runnerq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runnerq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "runnerq.operator.labels" -}}
{{ include "runnerq.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Selector labels of the operator's pods. */}}
{{- define "runnerq.operator.selectorLabels" -}}
{{ include "runnerq.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The console's objects: Deployment, Service, Ingress, NetworkPolicy, RBAC. */}}
{{- define "runnerq.console.fullname" -}}
{{- printf "%s-console" (include "runnerq.fullname" .) }}
{{- end }}

{{/* The console's ServiceAccount. */}}
{{- define "runnerq.console.serviceAccountName" -}}
{{- if .Values.console.serviceAccount.create }}
{{- default (include "runnerq.console.fullname" .) .Values.console.serviceAccount.name }}
{{- else }}
{{- required "console.serviceAccount.name is required when console.serviceAccount.create is false" .Values.console.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels of the console's objects. */}}
{{- define "runnerq.console.labels" -}}
{{ include "runnerq.labels" . }}
app.kubernetes.io/component: console
{{- end }}

{{/* Selector labels of the console's pods. */}}
{{- define "runnerq.console.selectorLabels" -}}
{{ include "runnerq.selectorLabels" . }}
app.kubernetes.io/component: console
{{- end }}
