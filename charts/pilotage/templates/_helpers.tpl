{{/* Name of the chart, or nameOverride. */}}
{{- define "pilotage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<release>-<name>` (the release name alone when it already holds the name), ≤ 63 chars. */}}
{{- define "pilotage.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "pilotage.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "pilotage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pilotage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "pilotage.labels" -}}
{{ include "pilotage.selectorLabels" . }}
app.kubernetes.io/part-of: pilotage
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "pilotage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pilotage.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference of one of the three images: (dict "root" $ "image" "server"). */}}
{{- define "pilotage.image" -}}
{{- $images := .root.Values.images -}}
{{- $image := index $images .image -}}
{{- $ref := printf "%s/%s" (trimSuffix "/" $images.registry) $image.repository -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $ref $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (coalesce $image.tag $images.tag .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the operator watches (the release namespace stands for "all" in cluster-wide mode only for objects that need one namespace). */}}
{{- define "pilotage.watchedNamespaces" -}}
{{- if .Values.watch.clusterWide -}}
{{- list .Release.Namespace | toJson -}}
{{- else -}}
{{- if not .Values.watch.namespaces -}}
{{- fail "watch.namespaces must list at least one namespace when watch.clusterWide is false" -}}
{{- end -}}
{{- .Values.watch.namespaces | uniq | toJson -}}
{{- end -}}
{{- end -}}

{{- define "pilotage.artifactUri" -}}
{{- $a := .Values.artifacts -}}
{{- if eq $a.type "s3" -}}
{{- $bucket := required "artifacts.s3.bucket is required when artifacts.type is s3" $a.s3.bucket -}}
{{- if $a.s3.prefix -}}
{{- printf "s3://%s/%s" $bucket (trimAll "/" $a.s3.prefix) -}}
{{- else -}}
{{- printf "s3://%s" $bucket -}}
{{- end -}}
{{- else -}}
{{- if $a.pvc.path -}}
{{- printf "pvc://%s/%s" $a.pvc.claimName (trimAll "/" $a.pvc.path) -}}
{{- else -}}
{{- printf "pvc://%s" $a.pvc.claimName -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Restricted security context of every container the chart renders. */}}
{{- define "pilotage.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pilotage.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pilotage.dashboardSelectorLabels" -}}
app.kubernetes.io/name: {{ include "pilotage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: dashboard
{{- end -}}

{{- define "pilotage.dashboardLabels" -}}
{{ include "pilotage.dashboardSelectorLabels" . }}
app.kubernetes.io/part-of: pilotage
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
