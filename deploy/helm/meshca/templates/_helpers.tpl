{{/* Names and labels (https://helm.sh/docs/chart_best_practices/labels/). */}}
{{- define "meshca.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshca.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "meshca.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshca.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "meshca.labels" -}}
{{ include "meshca.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "meshca.serviceAccountName" -}}
{{- default (include "meshca.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The port of a listen address such as ":15012" or "0.0.0.0:15012". */}}
{{- define "meshca.port" -}}
{{- $p := regexReplaceAll "^.*:" . "" }}
{{- if not (regexMatch "^[0-9]+$" $p) }}
{{- fail (printf "listen address %q has no numeric port" .) }}
{{- end }}
{{- $p }}
{{- end }}

{{/*
meshca.config is meshca.yaml: .Values.config with the Service's DNS names
appended to server.dnsNames (meshca's serving certificate must carry the
host part of Istio's CA_ADDR, which is the TLS SNI).
*/}}
{{- define "meshca.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $server := default dict $cfg.server }}
{{- $names := default list $server.dnsNames }}
{{- $svc := include "meshca.fullname" . }}
{{- range (list (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.%s" $svc .Release.Namespace .Values.clusterDomain)) }}
{{- if not (has . $names) }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- $_ := set $server "dnsNames" $names }}
{{- $_ := set $cfg "server" $server }}
{{- include "meshca.auditConfig" (dict "root" . "cfg" $cfg) }}
{{- toYaml $cfg }}
{{- end }}

{{/* Feature switches read from meshca's configuration. */}}
{{- define "meshca.trustBundleEnabled" -}}
{{- if (dig "trustBundle" "enabled" false .Values.config) }}true{{ end }}
{{- end }}
{{- define "meshca.controllersEnabled" -}}
{{- if or (dig "trustBundle" "enabled" false .Values.config) (dig "signers" "csr" "enabled" false .Values.config) (dig "signers" "podCertificates" "enabled" false .Values.config) (dig "signers" "certManager" "enabled" false .Values.config) }}true{{ end }}
{{- end }}
{{- define "meshca.istiodNamespace" -}}
{{- dig "trustBundle" "istiodNamespace" "istio-system" .Values.config }}
{{- end }}

{{/*
meshca.binding renders a (Cluster)RoleBinding of the (Cluster)Role of the
same name to meshca's ServiceAccount: (dict "root" $ "kind" "ClusterRole"
"name" NAME ["namespace" NS]).
*/}}
{{- define "meshca.binding" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ .kind }}Binding
metadata:
  name: {{ .name }}
  {{- with .namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "meshca.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ .kind }}
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "meshca.serviceAccountName" .root }}
    namespace: {{ .root.Release.Namespace }}
{{- end }}

{{/*
meshca.auditConfig sets config.audit from the audit values block (dict
"root" $ "cfg" $cfg): one writer per audit file, so not with several
replicas on the shared data volume.
*/}}
{{- define "meshca.auditConfig" -}}
{{- $a := .root.Values.audit }}
{{- if and $a $a.enabled }}
{{- if hasKey .cfg "audit" }}
{{- fail "audit.enabled and config.audit are both set: configure the audit file in one of them" }}
{{- end }}
{{- if gt (int .root.Values.replicaCount) 1 }}
{{- fail (printf "audit.enabled with replicaCount %d: the replicas share the data volume and an audit file has one writer; use replicaCount 1" (int .root.Values.replicaCount)) }}
{{- end }}
{{- $_ := set .cfg "audit" (dict "file" $a.file "maxSizeMiB" (int $a.maxSizeMiB) "maxFiles" (int $a.maxFiles) "checkpointInterval" $a.checkpointInterval) }}
{{- end }}
{{- end }}
