{{/*
The chart name, or nameOverride.
*/}}
{{- define "pin-feature-daemon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, or the release name when it already contains the
chart name, or "<release>-<chart>". Truncated to 63 characters (some name fields are DNS labels).
*/}}
{{- define "pin-feature-daemon.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "pin-feature-daemon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "pin-feature-daemon.labels" -}}
helm.sh/chart: {{ include "pin-feature-daemon.chart" . }}
{{ include "pin-feature-daemon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pin-feature-daemon
{{- end }}

{{/*
Labels that select the daemon's pods; they must never change between chart versions (the DaemonSet selector
is immutable).
*/}}
{{- define "pin-feature-daemon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pin-feature-daemon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the daemon runs as.
*/}}
{{- define "pin-feature-daemon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pin-feature-daemon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The container image reference: repository@digest, or repository:tag (tag defaults to the appVersion).
*/}}
{{- define "pin-feature-daemon.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Whether the daemon talks to the API server at all (every output but stdout does).
*/}}
{{- define "pin-feature-daemon.usesAPI" -}}
{{- if ne .Values.output "stdout" }}true{{ end }}
{{- end }}

{{/*
The user name the API server sees for the daemon's ServiceAccount token.
*/}}
{{- define "pin-feature-daemon.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "pin-feature-daemon.serviceAccountName" .) }}
{{- end }}

{{/*
validate fails the render on values that contradict each other; values.schema.json checks each value alone.
*/}}
{{- define "pin-feature-daemon.validate" -}}
{{- if and (eq .Values.output "file") (not .Values.featuresDir) }}
{{- fail "output: file needs featuresDir (the host directory nfd-worker reads feature files from)" }}
{{- end }}
{{- if and .Values.featuresDir (not (isAbs .Values.featuresDir)) }}
{{- fail (printf "featuresDir must be an absolute host path, not %q" .Values.featuresDir) }}
{{- end }}
{{- if and .Values.stateDir (not (isAbs .Values.stateDir)) }}
{{- fail (printf "stateDir must be an absolute host path or empty, not %q" .Values.stateDir) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled (a ServiceMonitor selects the metrics Service)" }}
{{- end }}
{{- if and .Values.nodeFeatureRule.enabled (not (has .Values.output (list "nodefeature" "file"))) }}
{{- fail (printf "nodeFeatureRule.enabled needs output: nodefeature or file, not %s: NFD rules match features, which only those outputs publish (the pinmemory.labels feature of the daemon's NodeFeature, nfd-worker's local.label of the feature file); a Node's labels are not features" .Values.output) }}
{{- end }}
{{- if and (eq .Values.output "node") .Values.admissionPolicy.enabled (not .Values.rbac.create) }}
{{- fail "admissionPolicy.enabled with output: node needs rbac.create (the policy guards the node permissions the chart grants)" }}
{{- end }}
{{- if and (has "Deny" .Values.admissionPolicy.validationActions) (has "Warn" .Values.admissionPolicy.validationActions) }}
{{- fail "admissionPolicy.validationActions cannot hold both Deny and Warn" }}
{{- end }}
{{- if and (not .Values.bench.enabled) .Values.bench.force }}
{{- fail "bench.force has no effect with bench.enabled: false" }}
{{- end }}
{{- if and (ne (include "pin-feature-daemon.runAsUser" .) "0") (or .Values.stateDir (eq .Values.output "file")) }}
{{- fail "a non-root podSecurityContext.runAsUser cannot write the root-owned hostPath directories: set stateDir: \"\" and use an output other than file" }}
{{- end }}
{{- end }}

{{/*
The uid the daemon container runs as: the container's runAsUser, else the pod's, else the image's USER (65532).
*/}}
{{- define "pin-feature-daemon.runAsUser" -}}
{{- if hasKey (.Values.securityContext | default dict) "runAsUser" }}
{{- .Values.securityContext.runAsUser | int }}
{{- else if hasKey (.Values.podSecurityContext | default dict) "runAsUser" }}
{{- .Values.podSecurityContext.runAsUser | int }}
{{- else }}65532
{{- end }}
{{- end }}

{{/*
CEL for the admission policies: the node of the pod whose bound ServiceAccount token made the request, ''
when the token names none (a token not bound to a scheduled pod, or an API server older than 1.30 or with
the ServiceAccountTokenPodNodeInfo feature off).
*/}}
{{- define "pin-feature-daemon.celTokenNode" -}}
has(request.userInfo.extra) && 'authentication.kubernetes.io/node-name' in request.userInfo.extra
&& size(request.userInfo.extra['authentication.kubernetes.io/node-name']) == 1
? request.userInfo.extra['authentication.kubernetes.io/node-name'][0] : ''
{{- end }}

{{/*
CEL for the admission policies: the objects a request writes, before and after (CREATE has no old object,
DELETE no new one), so that a check holds for both and an UPDATE can neither take an object over nor give it
away.
*/}}
{{- define "pin-feature-daemon.celObjects" -}}
request.operation == 'CREATE' ? [object] : request.operation == 'DELETE' ? [oldObject] : [oldObject, object]
{{- end }}
