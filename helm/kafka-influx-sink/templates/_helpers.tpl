{{/*
Names, labels and the pieces several templates share: where secrets are mounted, which Secret
holds each credential, the replica cap, and the sink's TOML file built from .Values.config.
*/}}

{{- define "kis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or just <release> when it already contains the chart name. */}}
{{- define "kis.fullname" -}}
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

{{- define "kis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kis.labels" -}}
helm.sh/chart: {{ include "kis.chart" . }}
{{ include "kis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: sink
app.kubernetes.io/part-of: kafka-influx-sink
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kis.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The chart-made Secret; suffixed so it never meets a Strimzi KafkaUser Secret of the same name. */}}
{{- define "kis.credentialsSecretName" -}}
{{- printf "%s-credentials" (include "kis.fullname" . | trunc 51 | trimSuffix "-") -}}
{{- end -}}

{{- define "kis.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Where the ConfigMap (config.toml and schemaFiles) and the secrets are mounted. */}}
{{- define "kis.configDir" -}}/etc/kafka-influx-sink{{- end -}}
{{- define "kis.secretsDir" -}}/var/run/secrets/kafka-influx-sink{{- end -}}

{{/*
The credentials a file is mounted for: name, the values entry (existingSecret/key/value), and
the file's path under the secrets directory. Only entries that are set count.
*/}}
{{- define "kis.fileCredentials" -}}
{{- $v := .Values -}}
{{- $all := list
  (dict "id" "influxdb-token" "source" $v.influxdb.token "path" "influxdb/token")
  (dict "id" "influxdb-password" "source" $v.influxdb.password "path" "influxdb/password")
  (dict "id" "influxdb-ca" "source" $v.influxdb.ca "path" "influxdb/ca.crt")
  (dict "id" "schema-registry-user-info" "source" $v.schemaRegistry.basicAuth "path" "schema-registry/user-info")
  (dict "id" "schema-registry-bearer-token" "source" $v.schemaRegistry.bearerToken "path" "schema-registry/bearer-token")
  (dict "id" "schema-registry-ca" "source" $v.schemaRegistry.ca "path" "schema-registry/ca.crt")
-}}
{{- $set := list -}}
{{- range $all -}}
{{- if or .source.existingSecret .source.value -}}
{{- $set = append $set . -}}
{{- end -}}
{{- end -}}
{{- toJson $set -}}
{{- end -}}

{{/* The Secret and key a credential entry is read from: the existing one, or the chart's. */}}
{{- define "kis.secretRef" -}}
{{- $root := index . 0 -}}{{- $id := index . 1 -}}{{- $source := index . 2 -}}
{{- if $source.existingSecret -}}
{{- toJson (dict "name" $source.existingSecret "key" $source.key) -}}
{{- else -}}
{{- toJson (dict "name" (include "kis.credentialsSecretName" $root) "key" $id) -}}
{{- end -}}
{{- end -}}

{{/* Key/value pairs the chart's own Secret holds (empty: no Secret is rendered). */}}
{{- define "kis.chartSecretData" -}}
{{- $data := dict -}}
{{- range (include "kis.fileCredentials" . | fromJsonArray) -}}
{{- if and (not .source.existingSecret) .source.value -}}
{{- $_ := set $data .id .source.value -}}
{{- end -}}
{{- end -}}
{{- $auth := .Values.kafka.authentication -}}
{{- if and (include "kis.kafkaSasl" .) (not $auth.passwordSecret.secretName) $auth.password -}}
{{- $_ := set $data "kafka-sasl-password" $auth.password -}}
{{- end -}}
{{- if and .Values.autoscaling.keda.enabled (include "kis.kedaNeedsAuth" .) -}}
{{- /* KEDA reads sasl, username and tls only from a TriggerAuthentication source. */ -}}
{{- if include "kis.kafkaSasl" . -}}
{{- $_ := set $data "keda-sasl" (include "kis.kedaSasl" .) -}}
{{- $_ := set $data "keda-username" $auth.username -}}
{{- end -}}
{{- $_ := set $data "keda-tls" (ternary "enable" "disable" (eq (include "kis.kafkaTls" .) "true")) -}}
{{- end -}}
{{- toJson $data -}}
{{- end -}}

{{/* The librdkafka sasl.mechanism for the authentication type; empty without SASL. */}}
{{- define "kis.kafkaSasl" -}}
{{- $type := .Values.kafka.authentication.type -}}
{{- if eq $type "plain" -}}PLAIN
{{- else if eq $type "scram-sha-256" -}}SCRAM-SHA-256
{{- else if eq $type "scram-sha-512" -}}SCRAM-SHA-512
{{- end -}}
{{- end -}}

{{- define "kis.kedaSasl" -}}
{{- $type := .Values.kafka.authentication.type -}}
{{- if eq $type "plain" -}}plaintext
{{- else if eq $type "scram-sha-256" -}}scram_sha256
{{- else if eq $type "scram-sha-512" -}}scram_sha512
{{- else -}}none
{{- end -}}
{{- end -}}

{{/* "true" when the brokers are reached over TLS: asked for, or implied by mutual TLS. */}}
{{- define "kis.kafkaTls" -}}
{{- or .Values.kafka.tls.enabled (eq .Values.kafka.authentication.type "tls") -}}
{{- end -}}

{{- define "kis.kedaNeedsAuth" -}}
{{- if or (include "kis.kafkaSasl" .) (eq (include "kis.kafkaTls" .) "true") -}}true{{- end -}}
{{- end -}}

{{/* The replica cap: autoscaling.maxReplicas, else kafka.partitions. */}}
{{- define "kis.maxReplicas" -}}
{{- $partitions := .Values.kafka.partitions -}}
{{- if not $partitions -}}
{{- fail "autoscaling needs kafka.partitions: the partition count of the consumed topics caps the replicas (a replica beyond it gets no partition)" -}}
{{- end -}}
{{- $max := default $partitions .Values.autoscaling.maxReplicas -}}
{{- if gt (int $max) (int $partitions) -}}
{{- fail (printf "autoscaling.maxReplicas (%d) exceeds kafka.partitions (%d): replicas beyond the partition count get no partition and sit idle" (int $max) (int $partitions)) -}}
{{- end -}}
{{- if lt (int $max) (int .Values.autoscaling.minReplicas) -}}
{{- fail (printf "autoscaling.minReplicas (%d) exceeds the maximum (%d)" (int .Values.autoscaling.minReplicas) (int $max)) -}}
{{- end -}}
{{- int $max -}}
{{- end -}}

{{/*
The sink's configuration: .Values.config plus what the chart owns (the metrics listener, the
credential files, the Kafka security properties). Checks that the values fit together.
*/}}
{{- define "kis.sinkConfig" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $secrets := include "kis.secretsDir" . -}}
{{- range $section := list "kafka" "influxdb" "schema_registry" -}}
{{- if not (hasKey $cfg $section) -}}{{- $_ := set $cfg $section dict -}}{{- end -}}
{{- end -}}

{{- /* Credentials never come through config: the chart mounts them and names the files. */ -}}
{{- range $key := list "token" "token_file" "password" "password_file" "ca_file" -}}
{{- if hasKey $cfg.influxdb $key -}}
{{- fail (printf "config.influxdb.%s: set it with influxdb.token / influxdb.password / influxdb.ca (existingSecret or value), never in the ConfigMap" $key) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "basic_auth_user_info" "basic_auth_user_info_file" "bearer_token" "bearer_token_file" "ca_file" -}}
{{- if hasKey $cfg.schema_registry $key -}}
{{- fail (printf "config.schema_registry.%s: set it with schemaRegistry.basicAuth / bearerToken / ca (existingSecret or value)" $key) -}}
{{- end -}}
{{- end -}}
{{- if hasKey $cfg "metrics" -}}
{{- fail "config.metrics: the chart sets [metrics] itself (listen on metrics.port); remove it" -}}
{{- end -}}

{{- $fileKeys := dict
  "influxdb-token" (list "influxdb" "token_file")
  "influxdb-password" (list "influxdb" "password_file")
  "influxdb-ca" (list "influxdb" "ca_file")
  "schema-registry-user-info" (list "schema_registry" "basic_auth_user_info_file")
  "schema-registry-bearer-token" (list "schema_registry" "bearer_token_file")
  "schema-registry-ca" (list "schema_registry" "ca_file")
-}}
{{- range (include "kis.fileCredentials" . | fromJsonArray) -}}
{{- $target := index $fileKeys .id -}}
{{- $_ := set (index $cfg (index $target 0)) (index $target 1) (printf "%s/%s" $secrets .path) -}}
{{- end -}}

{{- $api := default "v2" $cfg.influxdb.api -}}
{{- if and (eq $api "v2") (not (hasKey $cfg.influxdb "token_file")) -}}
{{- fail "config.influxdb.api v2 needs a token: set influxdb.token.existingSecret (and key) or influxdb.token.value" -}}
{{- end -}}
{{- if and (hasKey $cfg.influxdb "password_file") (not $cfg.influxdb.username) -}}
{{- fail "influxdb.password is set but config.influxdb.username is not" -}}
{{- end -}}
{{- if and (or .Values.schemaRegistry.basicAuth.existingSecret .Values.schemaRegistry.basicAuth.value) (or .Values.schemaRegistry.bearerToken.existingSecret .Values.schemaRegistry.bearerToken.value) -}}
{{- fail "schemaRegistry: set basicAuth or bearerToken, not both" -}}
{{- end -}}
{{- if and (or (hasKey $cfg.schema_registry "basic_auth_user_info_file") (hasKey $cfg.schema_registry "bearer_token_file") (hasKey $cfg.schema_registry "ca_file")) (not $cfg.schema_registry.url) -}}
{{- fail "schemaRegistry credentials are set but config.schema_registry.url is not" -}}
{{- end -}}

{{- /* Kafka security: properties librdkafka reads; the password arrives by environment. */ -}}
{{- range $key := list "security_protocol" "sasl_mechanism" "sasl_username" "sasl_password" "sasl_password_file" "ssl_ca_file" "ssl_certificate_file" "ssl_key_file" "ssl_key_password" "ssl_key_password_file" -}}
{{- if hasKey $cfg.kafka $key -}}
{{- fail (printf "config.kafka.%s: set Kafka security with kafka.tls and kafka.authentication instead" $key) -}}
{{- end -}}
{{- end -}}
{{- if not (hasKey $cfg.kafka "properties") -}}{{- $_ := set $cfg.kafka "properties" dict -}}{{- end -}}
{{- $props := $cfg.kafka.properties -}}
{{- $managed := list "security.protocol" "sasl.mechanism" "sasl.mechanisms" "sasl.username" "sasl.password" "ssl.certificate.location" "ssl.key.location" "ssl.key.password" "ssl.key.pem" "ssl.certificate.pem" "sasl.jaas.config" -}}
{{- /* ssl.ca.location stays open (e.g. "probe" for the system roots) unless the chart mounts a CA. */ -}}
{{- if .Values.kafka.tls.trustedCertificate.secretName -}}{{- $managed = append $managed "ssl.ca.location" -}}{{- end -}}
{{- range $name := $managed -}}
{{- if hasKey $props $name -}}
{{- fail (printf "config.kafka.properties.%s: set Kafka security with kafka.tls and kafka.authentication instead" $name) -}}
{{- end -}}
{{- end -}}
{{- $auth := .Values.kafka.authentication -}}
{{- $sasl := include "kis.kafkaSasl" . -}}
{{- $tls := eq (include "kis.kafkaTls" .) "true" -}}
{{- if $sasl -}}
{{- if not $auth.username -}}
{{- fail (printf "kafka.authentication.type %s needs kafka.authentication.username" $auth.type) -}}
{{- end -}}
{{- if not (or $auth.passwordSecret.secretName $auth.password) -}}
{{- fail (printf "kafka.authentication.type %s needs kafka.authentication.passwordSecret.secretName (or password)" $auth.type) -}}
{{- end -}}
{{- $_ := set $props "security.protocol" (ternary "SASL_SSL" "SASL_PLAINTEXT" $tls) -}}
{{- $_ := set $props "sasl.mechanism" $sasl -}}
{{- $_ := set $props "sasl.username" $auth.username -}}
{{- else if $tls -}}
{{- $_ := set $props "security.protocol" "SSL" -}}
{{- end -}}
{{- if and $tls .Values.kafka.tls.trustedCertificate.secretName -}}
{{- $_ := set $props "ssl.ca.location" (printf "%s/kafka/ca.crt" $secrets) -}}
{{- end -}}
{{- if eq $auth.type "tls" -}}
{{- if not $auth.certificateAndKey.secretName -}}
{{- fail "kafka.authentication.type tls needs kafka.authentication.certificateAndKey.secretName" -}}
{{- end -}}
{{- $_ := set $props "ssl.certificate.location" (printf "%s/kafka/user.crt" $secrets) -}}
{{- $_ := set $props "ssl.key.location" (printf "%s/kafka/user.key" $secrets) -}}
{{- end -}}

{{- $_ := set $cfg "metrics" (dict "enabled" true "listen" (printf "0.0.0.0:%d" (int .Values.metrics.port))) -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* The shutdown timeout the sink will use, in milliseconds (its default: 20000). */}}
{{- define "kis.shutdownTimeoutMs" -}}
{{- $shutdown := .Values.config.shutdown | default dict -}}
{{- if hasKey $shutdown "timeout_ms" -}}{{- int64 $shutdown.timeout_ms -}}{{- else -}}20000{{- end -}}
{{- end -}}

{{/*
TOML writer. Tables become [section] headers in the order of config/reference.toml, nested
tables [a.b] headers; tables inside arrays (tags, fields, alert overrides) inline tables. Keys
set to null are left out. Integral numbers are written as integers (YAML numbers reach
templates as float64), strings as JSON strings, which are valid TOML basic strings.
*/}}
{{- define "kis.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "kis.toml.value" -}}
{{- $kind := kindOf . -}}
{{- if eq $kind "string" -}}{{ toJson . }}
{{- else if eq $kind "bool" -}}{{ . }}
{{- else if has $kind (list "int" "int64" "int32" "uint64") -}}{{ . }}
{{- else if eq $kind "float64" -}}
{{- if eq (float64 (int64 .)) . -}}{{ int64 . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- else if eq $kind "slice" -}}
[{{- range $i, $item := . -}}{{- if $i }}, {{ end -}}{{- include "kis.toml.value" $item -}}{{- end -}}]
{{- else if eq $kind "map" -}}
{{- $map := . -}}
{{- $present := list -}}
{{- range $key := keys $map | sortAlpha -}}
{{- if ne (kindOf (index $map $key)) "invalid" -}}{{- $present = append $present $key -}}{{- end -}}
{{- end -}}
{{- if $present -}}
{{ "{ " }}{{- range $i, $key := $present -}}{{- if $i }}, {{ end -}}{{ include "kis.toml.key" $key }} = {{ include "kis.toml.value" (index $map $key) }}{{- end -}}{{ " }" }}
{{- else -}}
{}
{{- end -}}
{{- else -}}
{{- fail (printf "config: cannot write %v (a %s) as TOML" . $kind) -}}
{{- end -}}
{{- end -}}

{{- define "kis.toml.table" -}}
{{- $table := .table -}}{{- $path := .path -}}
[{{ $path }}]
{{- range $key := keys $table | sortAlpha -}}
{{- $item := index $table $key -}}
{{- if not (has (kindOf $item) (list "map" "invalid")) }}
{{ include "kis.toml.key" $key }} = {{ include "kis.toml.value" $item }}
{{- end -}}
{{- end -}}
{{- range $key := keys $table | sortAlpha -}}
{{- $item := index $table $key -}}
{{- if eq (kindOf $item) "map" }}

{{ include "kis.toml.table" (dict "table" $item "path" (printf "%s.%s" $path (include "kis.toml.key" $key))) }}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kis.toml" -}}
{{- $cfg := . -}}
{{- $order := list "kafka" "schema" "schema_registry" "mapping" "influxdb" "batch" "dead_letter" "alerts" "metrics" "log" "shutdown" -}}
{{- $sections := $order -}}
{{- range $key := keys $cfg | sortAlpha -}}
{{- if not (has $key $order) -}}{{- $sections = append $sections $key -}}{{- end -}}
{{- end -}}
{{- range $section := $sections -}}
{{- $table := index $cfg $section -}}
{{- if $table }}
{{ include "kis.toml.table" (dict "table" $table "path" (include "kis.toml.key" $section)) }}
{{ end -}}
{{- end -}}
{{- end -}}

{{/* "5m" -> "5 minutes", for alert texts that name a duration; other forms stay as written. */}}
{{- define "kis.humanDuration" -}}
{{- if regexMatch "^[0-9]+[smhd]$" . -}}
{{- $n := regexReplaceAll "[smhd]$" . "" | int -}}
{{- $unit := get (dict "s" "second" "m" "minute" "h" "hour" "d" "day") (regexReplaceAll "^[0-9]+" . "") -}}
{{- printf "%d %s%s" $n $unit (ternary "" "s" (eq $n 1)) -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}
