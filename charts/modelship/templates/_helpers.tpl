{{/* Chart name, overridable. */}}
{{- define "modelship.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object's name: the release name, with the chart name unless it holds it. */}}
{{- define "modelship.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The operator's objects: Deployment, ServiceAccount, Service, its own roles. */}}
{{- define "modelship.operatorName" -}}
{{- printf "%s-operator" (include "modelship.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelship.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelship.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelship.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelship.labels" -}}
helm.sh/chart: {{ include "modelship.chart" . }}
{{ include "modelship.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelship
{{- end -}}

{{/* Labels of the operator's own objects (the Deployment's selector uses the first three). */}}
{{- define "modelship.operatorSelectorLabels" -}}
{{ include "modelship.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modelship.operatorLabels" -}}
{{ include "modelship.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modelship.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelship.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modelship.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the Prometheus Operator's objects are rendered: monitoring.enabled true, or "auto"
and the cluster serves monitoring.coreos.com/v1 (helm template: pass
--api-versions monitoring.coreos.com/v1).
*/}}
{{- define "modelship.monitoring" -}}
{{- $enabled := toString .Values.monitoring.enabled -}}
{{- if eq $enabled "true" -}}
true
{{- else if and (eq $enabled "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}
true
{{- end -}}
{{- end -}}

{{- define "modelship.monitoringLabels" -}}
{{ include "modelship.labels" . }}
{{- with .Values.monitoring.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
What the operator does to the resources it manages, in every namespace it watches; the
chart's README lists where in the code each rule comes from. Shared by the cluster-wide
ClusterRole and the per-namespace Roles, so both modes grant the same.
*/}}
{{- define "modelship.namespacedRules" -}}
# The custom resources: Kopf watches them and patches its finalizer and bookkeeping
# annotations; the operator's watch caches list and watch them, reads fall back to get
# until a cache has synced.
- apiGroups: [modelship.io]
  resources: [modeldeployments, trainingruns]
  verbs: [get, list, watch, patch]
- apiGroups: [modelship.io]
  resources: [modeldeployments/status, trainingruns/status]
  verbs: [patch]
# Retraining (spec.retraining) creates TrainingRuns from a ModelDeployment's template.
- apiGroups: [modelship.io]
  resources: [trainingruns]
  verbs: [create]
# Children carry ownerReferences with blockOwnerDeletion, which clusters that enforce owner
# references (OwnerReferencesPermissionEnforcement) allow only to who may update the owner's
# finalizers.
- apiGroups: [modelship.io]
  resources: [modeldeployments/finalizers, trainingruns/finalizers]
  verbs: [update]
# Every child below is listed and watched (by the managed-by label) into a watch cache.
# Triton Deployments and Services: server-side applied (create or patch), deleted when a
# version is retired.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
# Gateway API traffic provider; garbage-collected with its ModelDeployment.
- apiGroups: [gateway.networking.k8s.io]
  resources: [grpcroutes]
  verbs: [get, list, watch, create, patch]
# Training Jobs; garbage-collected with their TrainingRun.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch]
# Readiness of Triton pods, phase and termination message of trainer pods: read only.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
