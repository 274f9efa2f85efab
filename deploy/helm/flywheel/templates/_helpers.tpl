{{/* Names and labels ------------------------------------------------------------------------ */}}
{{- define "flywheel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flywheel.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "flywheel.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "flywheel.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* selector labels of one component: (dict "root" $ "component" "api") */}}
{{- define "flywheel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flywheel.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "flywheel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "flywheel.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: flywheel
{{- end }}

{{/* Pods running flywheel code carry this label: Redis, PostgreSQL, MLflow, OpenSearch and the vLLM
     pods accept traffic only from them. */}}
{{- define "flywheel.clientLabel" -}}
flywheel.dev/client: {{ .Release.Name | quote }}
{{- end }}

{{/* Images ------------------------------------------------------------------------------------ */}}
{{/* (dict "root" $ "image" "worker") -> registry/repository:tag[suffix] */}}
{{- define "flywheel.image" -}}
{{- $img := index .root.Values.images .image -}}
{{- $repo := $img.repository -}}
{{- if .root.Values.image.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .root.Values.image.registry) $repo }}{{ end -}}
{{- $tag := $img.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s%s" $repo $tag ($img.tagSuffix | default "") -}}
{{- end }}

{{/* Resource names ---------------------------------------------------------------------------- */}}
{{- define "flywheel.artifactsClaim" -}}
{{- .Values.artifacts.persistence.existingClaim | default (printf "%s-artifacts" (include "flywheel.fullname" .)) }}
{{- end }}
{{- define "flywheel.redisHost" -}}{{ include "flywheel.fullname" . }}-redis{{- end }}
{{- define "flywheel.postgresHost" -}}{{ include "flywheel.fullname" . }}-postgresql{{- end }}
{{- define "flywheel.mlflowHost" -}}{{ include "flywheel.fullname" . }}-mlflow{{- end }}
{{- define "flywheel.opensearchHost" -}}{{ include "flywheel.fullname" . }}-opensearch{{- end }}
{{- define "flywheel.generatedSecret" -}}{{ include "flywheel.fullname" . }}-generated{{- end }}
{{- define "flywheel.valuesSecret" -}}{{ include "flywheel.fullname" . }}-values{{- end }}
{{- define "flywheel.deployNamespace" -}}
{{- .Values.deployment.namespace | default .Release.Namespace }}
{{- end }}
{{- define "flywheel.configPath" -}}/etc/flywheel/config.yaml{{- end }}

{{/* A value generated once and kept across upgrades (read back from the live Secret).
     (dict "root" $ "key" "postgres-password" "value" <fresh value>) */}}
{{- define "flywheel.keptValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "flywheel.generatedSecret" .root) -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- .value -}}
{{- end -}}
{{- end }}

{{/* Secret references: each prints "name: ...\nkey: ..." or nothing ------------------------------ */}}
{{- define "flywheel.ref.apiTokens" -}}
{{- if .Values.api.auth.existingSecret }}
name: {{ .Values.api.auth.existingSecret }}
key: {{ .Values.api.auth.existingSecretKey }}
{{- else if .Values.api.auth.tokens }}
name: {{ include "flywheel.valuesSecret" . }}
key: api-tokens
{{- else }}
name: {{ include "flywheel.generatedSecret" . }}
key: api-tokens
{{- end }}
{{- end }}

{{- define "flywheel.ref.teacher" -}}
{{- if .Values.teacher.existingSecret }}
name: {{ .Values.teacher.existingSecret }}
key: {{ .Values.teacher.existingSecretKey }}
{{- else if .Values.teacher.apiKey }}
name: {{ include "flywheel.valuesSecret" . }}
key: teacher-api-key
{{- end }}
{{- end }}

{{- define "flywheel.ref.judge" -}}
{{- if .Values.judge.existingSecret }}
name: {{ .Values.judge.existingSecret }}
key: {{ .Values.judge.existingSecretKey }}
{{- else if .Values.judge.apiKey }}
name: {{ include "flywheel.valuesSecret" . }}
key: judge-api-key
{{- end }}
{{- end }}

{{- define "flywheel.ref.postgresPassword" -}}
{{- if .Values.postgresql.auth.existingSecret }}
name: {{ .Values.postgresql.auth.existingSecret }}
key: password
{{- else }}
name: {{ include "flywheel.generatedSecret" . }}
key: postgres-password
{{- end }}
{{- end }}

{{- define "flywheel.ref.redisPassword" -}}
{{- if .Values.redis.auth.existingSecret }}
name: {{ .Values.redis.auth.existingSecret }}
key: redis-password
{{- else }}
name: {{ include "flywheel.generatedSecret" . }}
key: redis-password
{{- end }}
{{- end }}

{{/* Does the chart have to generate anything? */}}
{{- define "flywheel.needsGenerated" -}}
{{- if or (and .Values.postgresql.enabled (not .Values.postgresql.auth.existingSecret)) (and .Values.redis.enabled (not .Values.redis.auth.existingSecret)) (and (include "flywheel.authEnabled" .) (not .Values.api.auth.existingSecret) (not .Values.api.auth.tokens)) -}}
true
{{- end -}}
{{- end }}

{{- define "flywheel.authEnabled" -}}
{{- $api := (include "flywheel.config" . | fromYaml).api | default dict -}}
{{- if ($api.auth | default dict).enabled }}true{{ end -}}
{{- end }}

{{/* config.yaml ------------------------------------------------------------------------------- */}}
{{/* The chart's production defaults (infrastructure only), then .Values.config merged over them. */}}
{{- define "flywheel.config" -}}
{{- $root := .Values.artifacts.mountPath -}}
{{- $fullname := include "flywheel.fullname" . -}}
{{- $logStore := dict "backend" .Values.logStore.backend "url" .Values.logStore.url "index" .Values.logStore.index "verify_certs" .Values.logStore.verifyCerts -}}
{{- if .Values.opensearch.enabled -}}
{{- $_ := set $logStore "backend" "opensearch" -}}
{{- $_ := set $logStore "url" (printf "http://%s:9200" (include "flywheel.opensearchHost" .)) -}}
{{- end -}}
{{- $queue := dict "backend" "redis" -}}
{{- if .Values.redis.enabled -}}
{{- /* the password is added from a Secret through FLYWHEEL__QUEUE__BROKER_URL */ -}}
{{- $_ := set $queue "broker_url" (printf "redis://%s:6379/0" (include "flywheel.redisHost" .)) -}}
{{- $_ := set $queue "result_backend" (printf "redis://%s:6379/1" (include "flywheel.redisHost" .)) -}}
{{- else if .Values.redis.external.url -}}
{{- $_ := set $queue "broker_url" .Values.redis.external.url -}}
{{- else -}}
{{- $_ := set $queue "broker_url" (printf "redis://set-from-secret-%s" (required "redis.external.url or redis.external.existingSecret is required when redis.enabled is false" .Values.redis.external.existingSecret)) -}}
{{- end -}}
{{- $jobStoreUrl := "" -}}
{{- if .Values.postgresql.enabled -}}
{{- /* the password is added from a Secret through FLYWHEEL__JOB_STORE__URL */ -}}
{{- $jobStoreUrl = printf "postgresql+psycopg://%s@%s:5432/%s" .Values.postgresql.username (include "flywheel.postgresHost" .) .Values.postgresql.database -}}
{{- else -}}
{{- $jobStoreUrl = printf "postgresql+psycopg://set-from-secret-%s" (required "postgresql.external.existingSecret (key url) is required when postgresql.enabled is false" .Values.postgresql.external.existingSecret) -}}
{{- end -}}
{{- $tracking := dict "enabled" true "tracking_uri" (printf "http://%s:%v" (include "flywheel.mlflowHost" .) .Values.mlflow.port) -}}
{{- if not .Values.mlflow.enabled -}}
{{- if .Values.mlflow.external.uri -}}
{{- $_ := set $tracking "tracking_uri" .Values.mlflow.external.uri -}}
{{- else -}}
{{- $tracking = dict "enabled" false -}}
{{- end -}}
{{- end -}}
{{- $defaults := dict
  "log_store" $logStore
  "queue" $queue
  "job_store" (dict "url" $jobStoreUrl)
  "artifacts" (dict "root" $root)
  "models" (dict "cache_dir" (printf "%s/models" $root))
  "tracking" $tracking
  "deployment" (dict "backend" .Values.deployment.backend "namespace" (include "flywheel.deployNamespace" .) "vllm_image" .Values.deployment.vllmImage "replicas" .Values.deployment.replicas "gpus_per_replica" .Values.deployment.gpusPerReplica "artifacts_pvc" (include "flywheel.artifactsClaim" .) "artifacts_mount" .Values.deployment.vllmMountPath)
  "api" (dict "host" "0.0.0.0" "port" .Values.api.port "embedded_worker" false)
  "gateway" (dict "host" "0.0.0.0" "port" .Values.gateway.port "auth_enabled" .Values.gateway.auth.enabled "spool_path" "/var/spool/flywheel/gateway-spool.jsonl")
-}}
{{- toYaml (mustMergeOverwrite $defaults (deepCopy (.Values.config | default dict))) }}
{{- end }}

{{/* Pods -------------------------------------------------------------------------------------- */}}
{{/* Environment of a flywheel container: (dict "root" $ "component" "api"|"gateway"|"worker"|"beat"|"fetch") */}}
{{- define "flywheel.env" -}}
{{- $root := .root -}}
{{- $c := .component -}}
{{- $v := $root.Values -}}
- name: FLYWHEEL_CONFIG
  value: {{ include "flywheel.configPath" $root }}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: HF_HOME
  value: {{ $v.artifacts.mountPath }}/hf-home
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: PYTHONUNBUFFERED
  value: "1"
{{- if $v.postgresql.enabled }}
- name: FLYWHEEL_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "flywheel.ref.postgresPassword" $root | trim | nindent 6 }}
- name: FLYWHEEL__JOB_STORE__URL
  value: postgresql+psycopg://{{ $v.postgresql.username }}:$(FLYWHEEL_POSTGRES_PASSWORD)@{{ include "flywheel.postgresHost" $root }}:5432/{{ $v.postgresql.database }}
{{- else }}
- name: FLYWHEEL__JOB_STORE__URL
  valueFrom:
    secretKeyRef: {name: {{ $v.postgresql.external.existingSecret }}, key: url}
{{- end }}
{{- if $v.redis.enabled }}
- name: FLYWHEEL_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "flywheel.ref.redisPassword" $root | trim | nindent 6 }}
- name: FLYWHEEL__QUEUE__BROKER_URL
  value: redis://:$(FLYWHEEL_REDIS_PASSWORD)@{{ include "flywheel.redisHost" $root }}:6379/0
- name: FLYWHEEL__QUEUE__RESULT_BACKEND
  value: redis://:$(FLYWHEEL_REDIS_PASSWORD)@{{ include "flywheel.redisHost" $root }}:6379/1
{{- else if $v.redis.external.existingSecret }}
- name: FLYWHEEL__QUEUE__BROKER_URL
  valueFrom:
    secretKeyRef: {name: {{ $v.redis.external.existingSecret }}, key: url}
{{- end }}
{{- if eq $c "api" }}
{{- if include "flywheel.authEnabled" $root }}
- name: FLYWHEEL__API__AUTH__TOKENS
  valueFrom:
    secretKeyRef:
      {{- include "flywheel.ref.apiTokens" $root | trim | nindent 6 }}
{{- end }}
{{- else }}
{{- /* Only the API serves api.auth; other processes load the same file but get no tokens (least
       privilege), so auth is off for them or the "needs a write token" check would refuse to start. */}}
- name: FLYWHEEL__API__AUTH__ENABLED
  value: "false"
{{- end }}
{{- if and (eq $c "gateway") $v.gateway.auth.enabled }}
- name: FLYWHEEL__GATEWAY__KEYS
  valueFrom:
    secretKeyRef: {name: {{ required "gateway.auth.existingSecret is required when gateway.auth.enabled" $v.gateway.auth.existingSecret }}, key: {{ $v.gateway.auth.existingSecretKey }}}
{{- end }}
{{- if and (has $c (list "api" "gateway" "worker")) (include "flywheel.ref.teacher" $root) }}
- name: FLYWHEEL__TEACHER__API_KEY
  valueFrom:
    secretKeyRef:
      {{- include "flywheel.ref.teacher" $root | trim | nindent 6 }}
{{- end }}
{{- if and (eq $c "worker") (include "flywheel.ref.judge" $root) }}
- name: FLYWHEEL__EVALUATION__JUDGE__API_KEY
  valueFrom:
    secretKeyRef:
      {{- include "flywheel.ref.judge" $root | trim | nindent 6 }}
{{- end }}
{{- if and (has $c (list "api" "worker")) $v.logStore.existingSecret (not $v.opensearch.enabled) }}
- name: FLYWHEEL__LOG_STORE__USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $v.logStore.existingSecret }}, key: username, optional: true}
- name: FLYWHEEL__LOG_STORE__PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $v.logStore.existingSecret }}, key: password, optional: true}
{{- end }}
{{- if and (has $c (list "api" "worker")) (not $v.mlflow.enabled) $v.mlflow.external.existingSecret }}
- name: MLFLOW_TRACKING_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $v.mlflow.external.existingSecret }}, key: username, optional: true}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $v.mlflow.external.existingSecret }}, key: password, optional: true}
{{- end }}
{{- if and (eq $v.artifacts.storage "s3") (ne $c "beat") }}
{{- /* Rendered for the S3 mode; the platform has no S3 artifact code yet (docs/helm.md). */}}
- name: FLYWHEEL_ARTIFACTS_S3_BUCKET
  value: {{ required "artifacts.s3.bucket is required when artifacts.storage is s3" $v.artifacts.s3.bucket | quote }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ $v.artifacts.s3.endpoint | quote }}
- name: AWS_REGION
  value: {{ $v.artifacts.s3.region | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ required "artifacts.s3.existingSecret is required when artifacts.storage is s3" $v.artifacts.s3.existingSecret }}, key: access-key-id}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $v.artifacts.s3.existingSecret }}, key: secret-access-key}
{{- end }}
{{- end }}

{{/* Volumes of a flywheel pod: (dict "root" $ "artifacts" true) */}}
{{- define "flywheel.volumes" -}}
- name: config
  configMap:
    name: {{ include "flywheel.fullname" .root }}-config
- name: tmp
  emptyDir:
    sizeLimit: {{ .tmpSize | default .root.Values.tmpSizeLimit }}
{{- if .artifacts }}
- name: artifacts
{{- if eq .root.Values.artifacts.storage "pvc" }}
  persistentVolumeClaim:
    claimName: {{ include "flywheel.artifactsClaim" .root }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
{{- end }}

{{- define "flywheel.volumeMounts" -}}
- name: config
  mountPath: /etc/flywheel
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .artifacts }}
- name: artifacts
  mountPath: {{ .root.Values.artifacts.mountPath }}
{{- end }}
{{- end }}

{{/* Pod-level fields shared by flywheel pods: (dict "root" $ "sa" name "place" <nodeSelector/tolerations/affinity holder>) */}}
{{- define "flywheel.podCommon" -}}
serviceAccountName: {{ .sa }}
automountServiceAccountToken: {{ .automount | default false }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .place.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .place.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .place.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "flywheel.podAnnotations" -}}
checksum/config: {{ include "flywheel.config" . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Container security context for third-party images that need a writable root (OpenSearch). */}}
{{- define "flywheel.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnly }}
capabilities: {drop: [ALL]}
{{- end }}
