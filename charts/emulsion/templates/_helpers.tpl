{{/*
Names, labels, the facts each component's code fixes, and the shared environment.
*/}}

{{- define "emulsion.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "emulsion.fullname" -}}
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

{{/* "<fullname>-<component>", the name of every object of one component. Args: root, name. */}}
{{- define "emulsion.componentName" -}}
{{- printf "%s-%s" (include "emulsion.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "emulsion.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "emulsion.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: emulsion
{{- end -}}

{{/* Selector labels of one component. Args: root, name. */}}
{{- define "emulsion.selectorLabels" -}}
app.kubernetes.io/name: {{ include "emulsion.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* All labels of one component's objects. Args: root, name. */}}
{{- define "emulsion.componentLabels" -}}
{{ include "emulsion.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/*
What each component's code needs, which is not the operator's choice and so not a value:
  kubernetesApi  - talks to the kube-apiserver (ServiceAccount token, RBAC, egress)
  objectStorage  - reads or writes S3 (credentials, egress)
  singleton      - exactly one active replica (kopf peering): Recreate, no autoscaling
  servesApi      - receives client traffic (ingress rule, API tokens)
  scratch        - streams originals to a scratch volume
  itemWorker     - holds image items through SIGTERM (grace > longest item)
  metricsPort    - /metrics on a port of their own (the API: apart from its public port;
                   the controller: /readyz too, since kopf owns httpPort)
  clusterPeering - kopf peering through a cluster-scoped ClusterKopfPeering
  workSigning    - signs (controller) or verifies (processor) work messages: mounts the key
*/}}
{{- define "emulsion.traits" -}}
api:
  metricsPort: 9090
  clusterPeering: false
  itemWorker: false
  kubernetesApi: true
  objectStorage: true
  singleton: false
  servesApi: true
  scratch: false
  workSigning: false
controller:
  metricsPort: 9090
  clusterPeering: true
  itemWorker: false
  kubernetesApi: true
  objectStorage: false
  singleton: true
  servesApi: false
  scratch: false
  workSigning: true
processor:
  metricsPort: 0
  clusterPeering: false
  itemWorker: true
  kubernetesApi: false
  objectStorage: true
  singleton: false
  servesApi: false
  scratch: true
  workSigning: true
janitor:
  metricsPort: 0
  clusterPeering: false
  itemWorker: false
  kubernetesApi: false
  objectStorage: true
  singleton: false
  servesApi: false
  scratch: false
  workSigning: false
{{- end -}}

{{/* registry/repository:tag, or registry/repository@digest when a digest pins it. */}}
{{- define "emulsion.image" -}}
{{- $root := .root -}}
{{- $repository := .component.image.repository -}}
{{- if $root.Values.image.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $root.Values.image.registry) $repository -}}
{{- end -}}
{{- if .component.image.digest -}}
{{- printf "%s@%s" $repository .component.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.component.image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The name of the port a component serves /metrics on. Args: traits. */}}
{{- define "emulsion.metricsPortName" -}}
{{- ternary "metrics" "http" (not (empty .traits.metricsPort)) -}}
{{- end -}}

{{/*
The ClusterKopfPeering of this release's controller: cluster-scoped, so it names the
namespace too; two releases must never pause each other's controller.
*/}}
{{- define "emulsion.peeringName" -}}
{{- printf "%s.%s-controller" .Release.Namespace (include "emulsion.fullname" .) | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{- define "emulsion.apiTokensSecret" -}}
{{- .Values.apiTokens.existingSecret | default (printf "%s-api-tokens" (include "emulsion.fullname" .)) -}}
{{- end -}}

{{/* The Secret of the components' NATS passwords, one key per component. */}}
{{- define "emulsion.natsCredentialsSecret" -}}
{{- .Values.nats.auth.existingSecret | default (printf "%s-nats-credentials" (include "emulsion.fullname" .)) -}}
{{- end -}}

{{- define "emulsion.natsPasswordFile" -}}/etc/emulsion/nats/password{{- end -}}
{{- define "emulsion.natsCaFile" -}}/etc/emulsion/nats-ca/ca.crt{{- end -}}

{{- define "emulsion.workSigningSecret" -}}
{{- .Values.workSigning.existingSecret | default (printf "%s-work-signing" (include "emulsion.fullname" .)) -}}
{{- end -}}

{{- define "emulsion.workSigningKeyFile" -}}/etc/emulsion/work-signing/key{{- end -}}

{{- define "emulsion.profilesFile" -}}/etc/emulsion/profiles/profiles.yaml{{- end -}}
{{- define "emulsion.apiTokensFile" -}}/etc/emulsion/api-tokens/tokens{{- end -}}
{{- /* Beside the tokens, in the same projected volume. */ -}}
{{- define "emulsion.apiTokenScopesFile" -}}/etc/emulsion/api-tokens/scopes.json{{- end -}}
{{- define "emulsion.apiTokenLimitsFile" -}}/etc/emulsion/api-tokens/limits.json{{- end -}}
{{- define "emulsion.apiTokenScopesConfigMap" -}}{{ printf "%s-api-token-scopes" (include "emulsion.fullname" .) }}{{- end -}}
{{- define "emulsion.scratchDir" -}}/var/lib/emulsion/scratch{{- end -}}

{{/*
The environment every component shares (NATS, S3, OTEL_*, logging, GC grace, profiles),
then what only some components need. Args: root, name, traits.
*/}}
{{- define "emulsion.env" -}}
{{- $v := .root.Values -}}
{{- /* The pod's name: the controller's peering identity, stable across container restarts. */}}
- name: POD_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: NATS_URL
  value: {{ $v.nats.url | quote }}
{{- if $v.nats.auth.enabled }}
{{- /* The component's own NATS identity (emulsion_contracts.natsauth): its name. */}}
- name: NATS_USER
  value: {{ .name | quote }}
- name: NATS_PASSWORD_FILE
  value: {{ include "emulsion.natsPasswordFile" .root | quote }}
{{- end }}
{{- if $v.nats.tls.caSecret }}
- name: NATS_CA_FILE
  value: {{ include "emulsion.natsCaFile" .root | quote }}
{{- end }}
- name: EMULSION_JETSTREAM_REPLICAS
  value: {{ $v.nats.jetstream.replicas | quote }}
- name: EMULSION_BUCKET
  value: {{ $v.s3.bucket | quote }}
- name: AWS_REGION
  value: {{ $v.s3.region | quote }}
{{- if $v.s3.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ $v.s3.endpointUrl | quote }}
{{- end }}
{{- /* The component's own storage identity (s3.identities), else the shared one. */}}
{{- $s3Secret := dig .name "existingSecret" "" $v.s3.identities | default $v.s3.credentials.existingSecret }}
{{- if and .traits.objectStorage $s3Secret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s3Secret }}
      key: {{ $v.s3.credentials.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3Secret }}
      key: {{ $v.s3.credentials.secretAccessKeyKey }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "emulsion-%s" .name | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ list (printf "service.namespace=%s" .root.Release.Namespace) (printf "service.version=%s" .root.Chart.AppVersion) $v.otel.resourceAttributes | compact | join "," | quote }}
{{- if $v.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $v.otel.protocol | quote }}
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $v.otel.sampler | quote }}
{{- if $v.otel.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $v.otel.samplerArg | quote }}
{{- end }}
- name: OTEL_PROPAGATORS
  value: tracecontext,baggage
- name: EMULSION_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: EMULSION_GC_GRACE_SECONDS
  value: {{ $v.gcGraceSeconds | quote }}
- name: EMULSION_HTTP_PORT
  value: {{ $v.httpPort | quote }}
- name: EMULSION_PROFILES_FILE
  value: {{ include "emulsion.profilesFile" .root | quote }}
{{- if .traits.servesApi }}
- name: EMULSION_JOB_TTL_SECONDS
  value: {{ $v.jobs.ttlSecondsAfterFinished | int64 | quote }}
- name: EMULSION_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}
{{- if .traits.clusterPeering }}
# Serve only the release's namespace, so RBAC on IngestJobs stays namespaced.
- name: EMULSION_NAMESPACES
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: EMULSION_CONTROLLER_PEERING
  value: {{ include "emulsion.peeringName" .root | quote }}
{{- end }}
{{- if .traits.metricsPort }}
- name: EMULSION_METRICS_PORT
  value: {{ .traits.metricsPort | quote }}
{{- end }}
{{- if .traits.servesApi }}
- name: EMULSION_API_TOKENS_FILE
  value: {{ include "emulsion.apiTokensFile" .root | quote }}
{{- if .root.Values.apiTokens.scopes }}
- name: EMULSION_API_TOKEN_SCOPES_FILE
  value: {{ include "emulsion.apiTokenScopesFile" .root | quote }}
{{- end }}
- name: EMULSION_API_TOKEN_LIMITS_FILE
  value: {{ include "emulsion.apiTokenLimitsFile" .root | quote }}
{{- with $v.cors.allowedOrigins }}
- name: EMULSION_CORS_ALLOWED_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
{{- end }}
{{- if .traits.workSigning }}
- name: EMULSION_WORK_SIGNING_KEY_FILE
  value: {{ include "emulsion.workSigningKeyFile" .root | quote }}
{{- end }}
{{- if .traits.scratch }}
- name: EMULSION_SCRATCH_DIR
  value: {{ include "emulsion.scratchDir" .root | quote }}
{{- end }}
{{- if .traits.itemWorker }}
- name: EMULSION_CONCURRENCY
  value: {{ $v.processing.concurrency | quote }}
- name: EMULSION_EXECUTOR
  value: {{ $v.processing.executor | quote }}
- name: EMULSION_DRAIN_SECONDS
  value: {{ $v.processing.longestItemSeconds | quote }}
- name: EMULSION_BULK_SHARE_EVERY
  value: {{ $v.processing.bulkShareEvery | quote }}
{{- end }}
{{- if eq .name "controller" }}
# The controller creates the records bucket and the item lists' store with this max age.
- name: EMULSION_RECORDS_RETENTION_SECONDS
  value: {{ $v.jobs.recordsRetentionSeconds | int64 | quote }}
- name: EMULSION_INTERACTIVE_MAX_ITEMS
  value: {{ $v.jobs.interactiveMaxItems | int64 | quote }}
# Fair share in the bulk lane (see docs/architecture.md).
- name: EMULSION_FEED_HIGH_WATER
  value: {{ $v.jobs.fairShare.highWater | int64 | quote }}
- name: EMULSION_FEED_MIN_WINDOW
  value: {{ $v.jobs.fairShare.minWindow | int64 | quote }}
{{- end }}
{{- if eq .name "janitor" }}
- name: EMULSION_JANITOR_FULL_PASS_SECONDS
  value: {{ $v.janitor.fullPassSeconds | quote }}
- name: EMULSION_JANITOR_FULL_PASS_KEYS_PER_SECOND
  value: {{ $v.janitor.fullPassKeysPerSecond | quote }}
{{- end }}
{{- range $key, $value := .component.env }}
- name: {{ $key }}
{{- if kindIs "map" $value }}
  valueFrom:
    {{- toYaml $value.valueFrom | nindent 4 }}
{{- else if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}
  {{- /* Helm reads every number as float64: 50000000 would print as 5e+07. */}}
  value: {{ int64 $value | quote }}
{{- else }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Autoscaled components get no fixed replica count (the HPA or KEDA owns it). */}}
{{- define "emulsion.autoscaled" -}}
{{- if .component.autoscaling.enabled -}}true{{- end -}}
{{- end -}}
