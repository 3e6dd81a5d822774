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
{{- printf "system:serviceaccount:%s:%s" (include "pin-feature-daemon.namespace" .) (include "pin-feature-daemon.serviceAccountName" .) }}
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
{{- include "pin-feature-daemon.checkHostDir" (list "stateDir" .Values.stateDir) }}
{{- include "pin-feature-daemon.checkHostDir" (list "featuresDir" .Values.featuresDir) }}
{{- if and .Values.rocm.hostPath (or (not (isAbs .Values.rocm.hostPath)) (eq .Values.rocm.hostPath "/")) }}
{{- fail (printf "rocm.hostPath must be an absolute host directory (not /) or empty, not %q" .Values.rocm.hostPath) }}
{{- end }}
{{- if and .Values.rocm.cdiDevices (ne .Values.gpuAccess "cdi") }}
{{- fail (printf "rocm.cdiDevices needs gpuAccess: cdi (the devices are CDI requests in the pod annotation), not %s" .Values.gpuAccess) }}
{{- end }}
{{- if and (not (trim .Values.nvidia.visibleDevices)) (has .Values.gpuAccess (list "envvar" "volume-mounts")) }}
{{- fail (printf "nvidia.visibleDevices may be empty only with gpuAccess: cdi or none, not %s (use gpuAccess: none to ask for no NVIDIA GPU)" .Values.gpuAccess) }}
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
{{- if and (eq (include "pin-feature-daemon.nodeSelectionMode" .) "accelerators") (empty .Values.nodeSelection.acceleratorTerms) }}
{{- fail "nodeSelection.mode selects accelerator nodes but nodeSelection.acceleratorTerms is empty: the DaemonSet would run nowhere (use mode: all)" }}
{{- end }}
{{- if empty .Values.pinPlatforms }}
{{- fail "pinPlatforms must name at least one platform (an empty --pin-platforms is refused by the daemon)" }}
{{- end }}
{{- if and (not .Values.bench.enabled) .Values.bench.force }}
{{- fail "bench.force has no effect with bench.enabled: false" }}
{{- end }}
{{- if and .Values.dra.deviceTaints.enabled (eq .Values.output "stdout") }}
{{- fail "dra.deviceTaints.enabled needs an output that talks to the API server (nodefeature, file or node), not stdout: output: stdout mounts no ServiceAccount token" }}
{{- end }}
{{- if and .Values.dra.deviceTaints.enabled (gt (int .Values.dra.deviceTaints.minH2DGBytesPerSec) 0) (not .Values.bench.enabled) }}
{{- fail "dra.deviceTaints.minH2DGBytesPerSec needs bench.enabled: without the DMA check no GPU has a figure to compare" }}
{{- end }}
{{- if eq (include "pin-feature-daemon.runAsUser" .) "0" }}
{{- fail "the daemon must not run as uid 0 (podSecurityContext.runAsUser, securityContext.runAsUser): root in the pod could write the host's mounts where the node cannot make them read-only recursively" }}
{{- end }}
{{- end }}

{{/*
Host directories the daemon may write (stateDir, featuresDir) must be its own, never a system directory that a
writable mount would expose: not /, not a top-level directory, none of systemDirs, nothing under /proc, /sys,
/dev, /boot or /run, and no "." or ".." component. values.schema.json holds the same rule.
*/}}
{{- define "pin-feature-daemon.systemDirs" -}}
/var/lib /var/run /var/log /var/cache /var/spool /var/tmp /usr/lib /usr/lib64 /usr/local /usr/share /usr/bin /usr/sbin /usr/libexec /usr/local/bin /usr/local/lib /etc/kubernetes /etc/systemd /etc/ssh /etc/cni /etc/containerd /etc/default /etc/sysctl.d /etc/modprobe.d /etc/security /etc/pam.d /etc/sudoers.d /etc/cron.d /etc/nvidia-container-runtime /var/lib/kubelet /var/lib/containerd /var/lib/docker /var/lib/etcd /var/lib/cni /opt/cni /opt/cni/bin
{{- end }}
{{- define "pin-feature-daemon.checkHostDir" -}}
{{- $name := index . 0 }}
{{- $path := index . 1 }}
{{- if $path }}
{{- $parts := splitList "/" (trimPrefix "/" $path) }}
{{- if or (lt (len $parts) 2) (has $path (splitList " " (include "pin-feature-daemon.systemDirs" .))) (regexMatch "^/(proc|sys|dev|boot|run)(/|$)" $path) (regexMatch "(^|/)(\\.|\\.\\.)?(/|$)" (trimPrefix "/" $path)) }}
{{- fail (printf "%s %q is a system directory or not a clean path: the pod mounts it writable, so give the daemon a directory of its own (e.g. /var/lib/pin-feature-daemon)" $name $path) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The gid the daemon container runs as: the container's runAsGroup, else the pod's, else the image's (65532).
*/}}
{{- define "pin-feature-daemon.runAsGroup" -}}
{{- if hasKey (.Values.securityContext | default dict) "runAsGroup" }}
{{- .Values.securityContext.runAsGroup | int }}
{{- else if hasKey (.Values.podSecurityContext | default dict) "runAsGroup" }}
{{- .Values.podSecurityContext.runAsGroup | int }}
{{- else }}65532
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

{{/*
The namespace of the chart's namespaced objects: namespaceOverride, or the release namespace.
*/}}
{{- define "pin-feature-daemon.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The priority class: the value as given, none for "-", and for "" system-node-critical in kube-system only (some
managed clusters admit the system-* classes nowhere else).
*/}}
{{- define "pin-feature-daemon.priorityClassName" -}}
{{- if eq .Values.priorityClassName "-" }}
{{- else if .Values.priorityClassName }}
{{- .Values.priorityClassName }}
{{- else if eq (include "pin-feature-daemon.namespace" .) "kube-system" }}system-node-critical
{{- end }}
{{- end }}

{{/*
nodeSelection.mode with auto resolved: all with output: node (no NFD labels to rely on), else accelerators.
*/}}
{{- define "pin-feature-daemon.nodeSelectionMode" -}}
{{- $mode := .Values.nodeSelection.mode }}
{{- if eq $mode "auto" }}
{{- if eq .Values.output "node" }}all{{ else }}accelerators{{ end }}
{{- else }}
{{- $mode }}
{{- end }}
{{- end }}

{{/*
The pod's affinity: the affinity value, plus a required nodeAffinity with one nodeSelectorTerm per accelerator
term (ORed) when nodes are selected by accelerator and the affinity value has no nodeAffinity of its own.
*/}}
{{- define "pin-feature-daemon.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) }}
{{- if and (eq (include "pin-feature-daemon.nodeSelectionMode" .) "accelerators") (not (hasKey $affinity "nodeAffinity")) }}
{{- $terms := list }}
{{- range .Values.nodeSelection.acceleratorTerms }}
{{- $terms = append $terms (dict "matchExpressions" (list .)) }}
{{- end }}
{{- $_ := set $affinity "nodeAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (dict "nodeSelectorTerms" $terms)) }}
{{- end }}
{{- with $affinity }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
seconds converts a Go duration (1h, 90m, 1h30m, 1.5h) into seconds, for the alerts' thresholds.
*/}}
{{- define "pin-feature-daemon.seconds" -}}
{{- $units := dict "ns" 1e-9 "us" 1e-6 "µs" 1e-6 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9.]+(ns|us|µs|ms|s|m|h)" . -1 }}
{{- $total = addf $total (mulf (regexFind "^[0-9.]+" . | float64) (get $units (regexReplaceAll "^[0-9.]+" . ""))) }}
{{- end }}
{{- $total }}
{{- end }}
