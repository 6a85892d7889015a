{{/*
Expand the name of the chart.
*/}}
{{- define "ovh-sms-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "ovh-sms-worker.fullname" -}}
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
Create chart name and version as used by the chart label.
*/}}
{{- define "ovh-sms-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "ovh-sms-worker.labels" -}}
helm.sh/chart: {{ include "ovh-sms-worker.chart" . }}
{{ include "ovh-sms-worker.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "ovh-sms-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ovh-sms-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of one worker pool's pods. Argument: (dict "root" $ "pool" $pool).
*/}}
{{- define "ovh-sms-worker.poolSelectorLabels" -}}
{{ include "ovh-sms-worker.selectorLabels" .root }}
app.kubernetes.io/component: worker
ovh-sms-worker/pool: {{ .pool.name }}
{{- end }}

{{/*
Name of one worker pool's Deployment (and of its HPA, ScaledObject, PDB). Argument: as above.
*/}}
{{- define "ovh-sms-worker.poolName" -}}
{{- printf "%s-%s" (include "ovh-sms-worker.fullname" .root) .pool.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of the inbound service's pods.
*/}}
{{- define "ovh-sms-worker.inboundSelectorLabels" -}}
{{ include "ovh-sms-worker.selectorLabels" . }}
app.kubernetes.io/component: inbound
{{- end }}

{{/*
Name of the inbound Deployment, Service and Ingress.
*/}}
{{- define "ovh-sms-worker.inboundName" -}}
{{- printf "%s-inbound" (include "ovh-sms-worker.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "ovh-sms-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ovh-sms-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Secret holding REDIS_URL and the OVH credentials: existingSecret, or the one the chart
creates (secret.create). Neither is a mistake worth stopping the install for.
*/}}
{{- define "ovh-sms-worker.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secret.create }}
{{- include "ovh-sms-worker.fullname" . }}
{{- else }}
{{- fail "set existingSecret to the name of a Secret holding REDIS_URL and the OVH credentials (see values.yaml), or secret.create=true with secret.values for a trial" }}
{{- end }}
{{- end }}

{{/*
Where the Secret is mounted when secretsAsFiles is true (SMS_WORKER_SECRETS_DIR).
*/}}
{{- define "ovh-sms-worker.secretsDir" -}}
/etc/sms-worker/secrets
{{- end }}

{{/*
Redis list of a lane's dramatiq queue: what KEDA watches. Must equal
contracts.wire.queue_key(contracts.wire.lane_queue(lane)); tests/test_chart.py checks it.
*/}}
{{- define "ovh-sms-worker.laneQueueKey" -}}
{{- printf "dramatiq:sms.%s" . }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the drain time plus a margin for the process to exit.
*/}}
{{- define "ovh-sms-worker.terminationGracePeriodSeconds" -}}
{{- add (int .Values.drainSeconds) 10 }}
{{- end }}

{{/*
Environment from the Secret, for workers and the inbound service. Argument: (dict "root" $
"inbound" bool). Only REDIS_URL is required of workers; the OVH keys are optional because
either the application keys or the OAuth2 client pair is used. The inbound service also
requires SMS_WORKER_INBOUND_TOKEN. With secretsAsFiles, the Secret is a volume instead.
*/}}
{{- define "ovh-sms-worker.secretEnv" -}}
{{- $secret := include "ovh-sms-worker.secretName" .root }}
{{- if .root.Values.secretsAsFiles }}
- name: SMS_WORKER_SECRETS_DIR
  value: {{ include "ovh-sms-worker.secretsDir" .root }}
{{- else }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: REDIS_URL
{{- range list "OVH_APPLICATION_KEY" "OVH_APPLICATION_SECRET" "OVH_CONSUMER_KEY" "OVH_CLIENT_ID" "OVH_CLIENT_SECRET" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
      optional: true
{{- end }}
{{- if .inbound }}
- name: SMS_WORKER_INBOUND_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: SMS_WORKER_INBOUND_TOKEN
{{- end }}
{{- end }}
{{- end }}

{{/*
Where OVH reaches the inbound service (https://host, no trailing slash), or nothing: inbound.publicUrl,
else the first Ingress host over https. Workers serve bulk campaigns' receivers documents under it,
so with it they get SMS_WORKER_INBOUND_PUBLIC_URL and the callback token the document URLs carry.
*/}}
{{- define "ovh-sms-worker.inboundPublicUrl" -}}
{{- if .Values.inbound.enabled }}
{{- if .Values.inbound.publicUrl }}
{{- trimSuffix "/" .Values.inbound.publicUrl }}
{{- else if and .Values.inbound.ingress.enabled .Values.inbound.ingress.hosts }}
{{- printf "https://%s" (first .Values.inbound.ingress.hosts) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Pod annotations that roll the pods when their configuration changes.
*/}}
{{- define "ovh-sms-worker.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if and .Values.secret.create (not .Values.existingSecret) }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/*
Volumes shared by workers and the inbound service.
*/}}
{{- define "ovh-sms-worker.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- if .Values.secretsAsFiles }}
- name: secrets
  secret:
    secretName: {{ include "ovh-sms-worker.secretName" . }}
    defaultMode: 0440
{{- end }}
{{- if .Values.redis.caSecret }}
- name: redis-ca
  secret:
    secretName: {{ .Values.redis.caSecret }}
    defaultMode: 0444
{{- end }}
{{- end }}

{{/*
Volume mounts matching ovh-sms-worker.volumes.
*/}}
{{- define "ovh-sms-worker.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.secretsAsFiles }}
- name: secrets
  mountPath: {{ include "ovh-sms-worker.secretsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.redis.caSecret }}
- name: redis-ca
  mountPath: {{ include "ovh-sms-worker.redisCaDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
Where redis.caSecret is mounted: REDIS_URL names the file, ...?ssl_ca_certs=<dir>/ca.crt.
*/}}
{{- define "ovh-sms-worker.redisCaDir" -}}
/etc/sms-worker/redis-ca
{{- end }}
