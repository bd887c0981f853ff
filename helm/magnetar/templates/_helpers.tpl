{{/* Names ------------------------------------------------------------------ */}}

{{- define "magnetar.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-magnetar, or the release name alone when it already says magnetar. */}}
{{- define "magnetar.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "magnetar.meta.fullname" -}}{{ include "magnetar.fullname" . }}-meta{{- end -}}
{{- define "magnetar.meta.headless" -}}{{ include "magnetar.fullname" . }}-meta-headless{{- end -}}
{{- define "magnetar.bookie.fullname" -}}{{ include "magnetar.fullname" . }}-bookie{{- end -}}
{{- define "magnetar.bookie.headless" -}}{{ include "magnetar.fullname" . }}-bookie-headless{{- end -}}
{{- define "magnetar.broker.fullname" -}}{{ include "magnetar.fullname" . }}-broker{{- end -}}
{{- define "magnetar.init.fullname" -}}{{ include "magnetar.fullname" . }}-init{{- end -}}

{{- define "magnetar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels: call with (dict "ctx" $ "component" "meta"). */}}
{{- define "magnetar.labels" -}}
helm.sh/chart: {{ include "magnetar.chart" .ctx }}
{{ include "magnetar.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: magnetar
{{- end -}}

{{- define "magnetar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "magnetar.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Service accounts ------------------------------------------------------- */}}

{{- define "magnetar.serviceAccount.broker" -}}
{{- default (include "magnetar.broker.fullname" .) .Values.serviceAccount.broker.name -}}
{{- end -}}

{{- define "magnetar.serviceAccount.default" -}}
{{- default (include "magnetar.fullname" .) .Values.serviceAccount.default.name -}}
{{- end -}}

{{/* Images: call with (dict "ctx" $ "image" .Values.images.meta). */}}
{{- define "magnetar.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* Addresses -------------------------------------------------------------- */}}

{{/* The DNS name of meta pod N: <meta>-N.<headless>.<ns>.svc.<domain>. */}}
{{- define "magnetar.meta.host" -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "magnetar.meta.fullname" .ctx) (int .ordinal) (include "magnetar.meta.headless" .ctx) .ctx.Release.Namespace .ctx.Values.clusterDomain -}}
{{- end -}}

{{/* The Raft peer list, one entry per replica: 1=<meta-1>:7001,2=<meta-2>:7001,...
     Node ids are the pod ordinals, which start at 1 (ids must be non-zero). */}}
{{- define "magnetar.meta.peers" -}}
{{- $peers := list -}}
{{- range $i := until (int .Values.meta.replicas) -}}
{{- $peers = append $peers (printf "%d=%s:%d" (add1 $i) (include "magnetar.meta.host" (dict "ctx" $ "ordinal" (add1 $i))) (int $.Values.meta.ports.grpc)) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}

{{/* The metadata service addresses clients use: every meta pod, comma-separated. */}}
{{- define "magnetar.meta.addresses" -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.meta.replicas) -}}
{{- $addrs = append $addrs (printf "%s:%d" (include "magnetar.meta.host" (dict "ctx" $ "ordinal" (add1 $i))) (int $.Values.meta.ports.grpc)) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end -}}

{{- define "magnetar.broker.httpUrl" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "magnetar.broker.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.broker.ports.http) -}}
{{- end -}}

{{- define "magnetar.broker.pulsarUrl" -}}
{{- printf "pulsar://%s.%s.svc.%s:%d" (include "magnetar.broker.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.broker.ports.pulsar) -}}
{{- end -}}

{{- define "magnetar.broker.pulsarSslUrl" -}}
{{- printf "pulsar+ssl://%s.%s.svc.%s:%d" (include "magnetar.broker.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.tls.broker.pulsarPort) -}}
{{- end -}}

{{- define "magnetar.broker.httpsUrl" -}}
{{- printf "https://%s.%s.svc.%s:%d" (include "magnetar.broker.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.tls.broker.httpsPort) -}}
{{- end -}}

{{/* The URL the init Job gives `magnetar admin`: HTTPS whenever TLS is on (the
     superuser token then never crosses the network in clear). */}}
{{- define "magnetar.broker.adminUrl" -}}
{{- if .Values.tls.enabled -}}
{{- include "magnetar.broker.httpsUrl" . -}}
{{- else -}}
{{- include "magnetar.broker.httpUrl" . -}}
{{- end -}}
{{- end -}}

{{/* Whether the brokers serve the plain 6650/8080 listeners: "true" or "". */}}
{{- define "magnetar.broker.plain" -}}
{{- if not (and .Values.tls.enabled .Values.tls.broker.disablePlain) -}}true{{- end -}}
{{- end -}}

{{/* Pod pieces -------------------------------------------------------------- */}}

{{/* Pod annotations: the Prometheus scrape ones (metrics.podAnnotations) and the
     component's own. Call with (dict "ctx" $ "port" 7100 "extra" .Values.meta.podAnnotations),
     plus "scheme" "https" for a port that serves HTTPS only. */}}
{{- define "magnetar.podAnnotations" -}}
{{- $a := dict -}}
{{- if .ctx.Values.metrics.podAnnotations -}}
{{- $_ := set $a "prometheus.io/scrape" "true" -}}
{{- $_ := set $a "prometheus.io/port" (toString .port) -}}
{{- $_ := set $a "prometheus.io/path" "/metrics" -}}
{{- with .scheme -}}
{{- $_ := set $a "prometheus.io/scheme" . -}}
{{- end -}}
{{- end -}}
{{- $a = merge (deepCopy (.extra | default dict)) $a -}}
{{- with $a }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment shared by every component: call with (dict "ctx" $ "prefix" "MAGNETAR_META_"). */}}
{{- define "magnetar.commonEnv" -}}
- name: {{ .prefix }}LOG_FORMAT
  value: {{ .ctx.Values.logFormat | quote }}
{{- with .ctx.Values.otlpEndpoint }}
- name: {{ $.prefix }}OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "magnetar.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A /tmp the read-only root filesystem lacks. */}}
{{- define "magnetar.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{- define "magnetar.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Auth ------------------------------------------------------------------------ */}}

{{- define "magnetar.auth.mountPath" -}}/etc/magnetar/auth{{- end -}}

{{/* The key file the brokers verify tokens with. */}}
{{- define "magnetar.auth.keyFile" -}}
{{- if eq .Values.auth.keyType "secret" -}}
{{ include "magnetar.auth.mountPath" . }}/{{ .Values.auth.secretKeyKey }}
{{- else -}}
{{ include "magnetar.auth.mountPath" . }}/{{ .Values.auth.publicKeyKey }}
{{- end -}}
{{- end -}}

{{/* Offload ------------------------------------------------------------------ */}}

{{/* The brokers' tiered-storage settings (their --offload-* flags). */}}
{{- define "magnetar.offloadEnv" -}}
{{- $o := .Values.offload -}}
- name: MAGNETAR_BROKER_OFFLOAD_DRIVER
  value: {{ $o.driver | quote }}
{{- with $o.bucket }}
- name: MAGNETAR_BROKER_OFFLOAD_BUCKET
  value: {{ . | quote }}
{{- end }}
{{- with $o.region }}
- name: MAGNETAR_BROKER_OFFLOAD_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $o.endpoint }}
- name: MAGNETAR_BROKER_OFFLOAD_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with $o.region }}
# The AWS SDK's own variable, for credentials from IRSA's web identity.
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $o.credentialsSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end -}}

{{/* TLS ------------------------------------------------------------------------- */}}

{{- define "magnetar.tls.mountPath" -}}/etc/magnetar/tls{{- end -}}

{{/* The Secret's three files, read-only; a missing key stops the pod from
     starting with the key's name in its events. */}}
{{- define "magnetar.tls.volume" -}}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      - key: ca.crt
        path: ca.crt
{{- end -}}

{{- define "magnetar.tls.mount" -}}
- name: tls
  mountPath: {{ include "magnetar.tls.mountPath" . }}
  readOnly: true
{{- end -}}

{{/* Whether a component mounts the TLS Secret: "true" or "". Call with
     (dict "ctx" $ "component" "meta"). Brokers and the init Job need it for
     the brokers' TLS; meta and bookies only for internal TLS. */}}
{{- define "magnetar.tls.mounted" -}}
{{- $t := .ctx.Values.tls -}}
{{- if and $t.enabled (or $t.internal.enabled (has .component (list "broker" "init"))) -}}true{{- end -}}
{{- end -}}

{{/* Metadata and bookie RPC over TLS (magnetar_tls::internal): the same
     variables for every binary. */}}
{{- define "magnetar.tls.internalEnv" -}}
{{- if and .Values.tls.enabled .Values.tls.internal.enabled -}}
{{- $dir := include "magnetar.tls.mountPath" . -}}
- name: MAGNETAR_INTERNAL_TLS_CA
  value: {{ printf "%s/ca.crt" $dir | quote }}
- name: MAGNETAR_INTERNAL_TLS_CERT
  value: {{ printf "%s/tls.crt" $dir | quote }}
- name: MAGNETAR_INTERNAL_TLS_KEY
  value: {{ printf "%s/tls.key" $dir | quote }}
{{- if .Values.tls.internal.mutual }}
- name: MAGNETAR_INTERNAL_TLS_MUTUAL
  value: "true"
{{- end }}
{{- end -}}
{{- end -}}
