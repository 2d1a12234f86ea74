{{/* The console's rules (a ClusterRole, or a Role per namespace of console.cluster.namespaces). */}}
{{- define "runnerq.console.rules" -}}
# The overview: each queue's ActivityQueue (replicas, last scale, conditions).
- apiGroups: [runnerq.io]
  resources: [activityqueues]
  verbs: [get, list, watch]
{{- if .Values.console.cluster.auditEvents }}
# An Event on the ActivityQueue per audited action (who, what, how many).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
{{- end }}
