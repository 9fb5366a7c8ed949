{{/*
The chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "aep-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: "<release>-<chart>", or "<release>" when the release
name already contains the chart name; truncated to 63 characters (DNS label limit).
*/}}
{{- define "aep-connector.fullname" -}}
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
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "aep-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "aep-connector.labels" -}}
helm.sh/chart: {{ include "aep-connector.chart" . }}
{{ include "aep-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: worker
{{- end }}

{{/*
Labels that select the release's pods; they must never change between upgrades.
*/}}
{{- define "aep-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aep-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "aep-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aep-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository:tag, or repository@digest when a digest pins it.
*/}}
{{- define "aep-connector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The Secret the credentials come from: existingSecret, else the chart-made one.
*/}}
{{- define "aep-connector.secretName" -}}
{{- .Values.existingSecret | default (include "aep-connector.fullname" .) }}
{{- end }}

{{/*
Whether the chart makes the credentials Secret: no existingSecret and at least one credential set.
Renders "true" or nothing.
*/}}
{{- define "aep-connector.createSecret" -}}
{{- $s := .Values.secrets }}
{{- if and (not .Values.existingSecret) (or $s.clientId $s.clientSecret $s.kafkaSecretProperties $s.schemaRegistrySecretProperties) }}true{{- end }}
{{- end }}

{{/*
Keys of the chart-made Secret, by credential. The env entries and secret.yaml share them.
*/}}
{{- define "aep-connector.chartSecretKeys" -}}
clientId: client-id
clientSecret: client-secret
kafkaSecretProperties: kafka-secret-properties
schemaRegistrySecretProperties: schema-registry-secret-properties
{{- end }}

{{/*
The environment variable of each credential.
*/}}
{{- define "aep-connector.secretEnvNames" -}}
clientId: AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_ID
clientSecret: AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_SECRET
kafkaSecretProperties: AEP_CONNECTOR_KAFKA__SECRET_PROPERTIES
schemaRegistrySecretProperties: AEP_CONNECTOR_KAFKA__SCHEMA_REGISTRY_SECRET_PROPERTIES
{{- end }}

{{/*
One setting as an environment variable value. Maps and lists become JSON (the worker reads
dictionaries and lists as JSON). Whole numbers are printed as integers: YAML numbers reach the
templates as float64, and `toString` would turn 1000000 into "1e+06", which an int setting refuses.
*/}}
{{- define "aep-connector.envValue" -}}
{{- if or (kindIs "map" .) (kindIs "slice" .) }}
{{- toJson . }}
{{- else if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- printf "%d" (int64 .) }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
An optional value as a string: "" for null or "", else as envValue prints it (so 0 stays "0").
*/}}
{{- define "aep-connector.optionalValue" -}}
{{- if not (kindIs "invalid" .) }}{{ include "aep-connector.envValue" . }}{{ end }}
{{- end }}

{{/*
The settings of .Values.config as env entries AEP_CONNECTOR_<SECTION>__<KEY>. platform.auth and
platform.transport are the nested sections; null values are left out so the worker's default
applies.
*/}}
{{- define "aep-connector.configEnv" -}}
{{- range $section, $keys := .Values.config }}
{{- range $key, $value := $keys }}
{{- if and (eq $section "platform") (has $key (list "auth" "transport")) }}
{{- range $nestedKey, $nestedValue := $value }}
{{- if not (kindIs "invalid" $nestedValue) }}
- name: {{ printf "AEP_CONNECTOR_PLATFORM__%s__%s" ($key | upper) ($nestedKey | upper) }}
  value: {{ include "aep-connector.envValue" $nestedValue | quote }}
{{- end }}
{{- end }}
{{- else if not (kindIs "invalid" $value) }}
- name: {{ printf "AEP_CONNECTOR_%s__%s" ($section | upper) ($key | upper) }}
  value: {{ include "aep-connector.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The OpenTelemetry SDK's variables (values `tracing`) as env entries, when config.tracing.enabled.
*/}}
{{- define "aep-connector.tracingEnv" -}}
{{- $enabled := (.Values.config.tracing | default dict).enabled }}
{{- if $enabled }}
{{- $tracing := .Values.tracing | default dict }}
- name: OTEL_SERVICE_NAME
  value: {{ $tracing.serviceName | default (include "aep-connector.fullname" .) | quote }}
{{- range $name, $value := dict "OTEL_EXPORTER_OTLP_ENDPOINT" $tracing.otlpEndpoint "OTEL_TRACES_SAMPLER" $tracing.sampler "OTEL_TRACES_SAMPLER_ARG" $tracing.samplerArg }}
{{- if $value }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := $tracing.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The ops port (config.ops.port, default 8080).
*/}}
{{- define "aep-connector.opsPort" -}}
{{- $ops := .Values.config.ops | default dict }}
{{- if kindIs "invalid" $ops.port }}8080{{ else }}{{ int64 $ops.port }}{{ end }}
{{- end }}

{{/*
The worker's drain bound in seconds (config.ops.shutdown_timeout_s, default 20).
*/}}
{{- define "aep-connector.drainSeconds" -}}
{{- $ops := .Values.config.ops | default dict }}
{{- if kindIs "invalid" $ops.shutdown_timeout_s }}20{{ else }}{{ $ops.shutdown_timeout_s }}{{ end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the explicit value, which must exceed the drain bound, or
ceil(drain bound) + 15 s for committing and leaving the group after the drain.
*/}}
{{- define "aep-connector.terminationGracePeriodSeconds" -}}
{{- $drain := include "aep-connector.drainSeconds" . | float64 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (ceil $drain | int64) 15 }}
{{- else }}
{{- $grace := .Values.terminationGracePeriodSeconds | int64 }}
{{- if le (float64 $grace) $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than config.ops.shutdown_timeout_s (%v), the worker's drain bound; leave it null to derive it" $grace $drain) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/*
Checks of relations between values that values.schema.json cannot express.
*/}}
{{- define "aep-connector.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are exclusive: KEDA makes its own HorizontalPodAutoscaler" }}
{{- end }}
{{- if and (not .Values.mappings) (not .Values.existingMappingsConfigMap) }}
{{- fail "no mappings: set mappings (file name -> contents) or existingMappingsConfigMap" }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- $min := include "aep-connector.optionalValue" $pdb.minAvailable }}
{{- $max := include "aep-connector.optionalValue" $pdb.maxUnavailable }}
{{- if and $pdb.enabled (ne $min "") (ne $max "") }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to \"\")" }}
{{- end }}
{{- if and $pdb.enabled (eq $min "") (eq $max "") }}
{{- fail "podDisruptionBudget: set one of minAvailable and maxUnavailable" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) }}
{{- fail "serviceMonitor.enabled needs service.enabled: the ServiceMonitor scrapes the Service" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not .Values.prometheusRule.selector) (not .Values.serviceMonitor.enabled) }}
{{- fail "prometheusRule.enabled needs serviceMonitor.enabled, or prometheusRule.selector set to the labels your Prometheus gives this release's series: without either the alerts would select nothing" }}
{{- end }}
{{- end }}
