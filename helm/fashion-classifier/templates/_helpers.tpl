{{/* Chart name, possibly overridden. */}}
{{- define "fashion-classifier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: the release name, plus the chart name unless already in it. */}}
{{- define "fashion-classifier.fullname" -}}
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

{{- define "fashion-classifier.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: (dict "ctx" $ "component" "classifier"). */}}
{{- define "fashion-classifier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fashion-classifier.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* Standard labels of every object: (dict "ctx" $ "component" "classifier"). */}}
{{- define "fashion-classifier.labels" -}}
{{ include "fashion-classifier.selectorLabels" . }}
helm.sh/chart: {{ include "fashion-classifier.chart" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: {{ include "fashion-classifier.name" .ctx }}
{{- end }}

{{- define "fashion-classifier.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "fashion-classifier.trainImage" -}}
{{- printf "%s:%s" .Values.trainImage.repository (default .Chart.AppVersion .Values.trainImage.tag) }}
{{- end }}

{{- define "fashion-classifier.cassandraName" -}}
{{- printf "%s-cassandra" (include "fashion-classifier.fullname" .) }}
{{- end }}

{{/* Stable DNS names of the first n Cassandra pods: (dict "ctx" $ "n" 2), comma-separated. */}}
{{- define "fashion-classifier.cassandraPods" -}}
{{- $name := include "fashion-classifier.cassandraName" .ctx }}
{{- $hosts := list }}
{{- range $i := until (int .n) }}
{{- $hosts = append $hosts (printf "%s-%d.%s" $name $i $name) }}
{{- end }}
{{- join "," $hosts }}
{{- end }}

{{/* FC_CASSANDRA_HOSTS: every StatefulSet pod, or the external hosts. */}}
{{- define "fashion-classifier.cassandraHosts" -}}
{{- if .Values.cassandra.enabled }}
{{- include "fashion-classifier.cassandraPods" (dict "ctx" . "n" .Values.cassandra.replicas) }}
{{- else }}
{{- join "," .Values.externalCassandra.hosts }}
{{- end }}
{{- end }}

{{/* "true" when the pods log in to Cassandra, the log being there: the release's own nodes with
cassandra.auth.enabled, or an external cluster whose superuser Secret is named. */}}
{{- define "fashion-classifier.cassandraAuth" -}}
{{- if eq .Values.config.predlog "cassandra" }}
{{- if .Values.cassandra.enabled }}{{ if .Values.cassandra.auth.enabled }}true{{ end }}
{{- else if .Values.externalCassandra.existingSecret }}true{{ end }}
{{- end }}
{{- end }}

{{/* Secret of a Cassandra role: (dict "ctx" $ "role" "admin"|"app"); existingSecret wins. An
external cluster's admin is its superuser (externalCassandra.existingSecret). */}}
{{- define "fashion-classifier.cassandraSecretName" -}}
{{- $role := index .ctx.Values.cassandra.auth .role }}
{{- if and (eq .role "admin") (not .ctx.Values.cassandra.enabled) }}
{{- .ctx.Values.externalCassandra.existingSecret }}
{{- else }}
{{- default (printf "%s-%s" (include "fashion-classifier.cassandraName" .ctx) .role) $role.existingSecret }}
{{- end }}
{{- end }}

{{/* The CA certificate of an external cluster's TLS, for the pods that connect to Cassandra:
(dict "ctx" $ "part" "volume"|"mount"), nothing without one. */}}
{{- define "fashion-classifier.cassandraCa" -}}
{{- $tls := .ctx.Values.externalCassandra.tls }}
{{- if and (not .ctx.Values.cassandra.enabled) $tls.enabled $tls.caSecret }}
{{- if eq .part "volume" }}
- name: cassandra-ca
  secret:
    secretName: {{ $tls.caSecret }}
    items:
      - key: {{ $tls.caKey }}
        path: ca.crt
{{- else }}
- name: cassandra-ca
  mountPath: /etc/fashion-classifier/cassandra-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* Checks that values.schema.json cannot express (they compare two values). */}}
{{- define "fashion-classifier.validate" -}}
{{- if and .Values.cassandra.enabled (gt (int .Values.cassandra.replicationFactor) (int .Values.cassandra.replicas)) }}
{{- fail (printf "cassandra.replicationFactor (%d) cannot exceed cassandra.replicas (%d)" (int .Values.cassandra.replicationFactor) (int .Values.cassandra.replicas)) }}
{{- end }}
{{- if and (eq .Values.config.predlog "cassandra") (not .Values.cassandra.enabled) (empty .Values.externalCassandra.hosts) }}
{{- fail "config.predlog is cassandra but cassandra.enabled is false and externalCassandra.hosts is empty" }}
{{- end }}
{{- with .Values.externalCassandra.tls }}
{{- if and .caSecret (not .enabled) }}
{{- fail "externalCassandra.tls.caSecret is set but externalCassandra.tls.enabled is false" }}
{{- end }}
{{- /* The pods check the nodes' certificates against this CA only (host names are not checked). */}}
{{- if and .enabled (not .caSecret) (not $.Values.cassandra.enabled) }}
{{- fail "externalCassandra.tls.enabled needs externalCassandra.tls.caSecret: the CA that signed the nodes' certificates" }}
{{- end }}
{{- end }}
{{- range $key, $_ := .Values.podLabels }}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (hasPrefix "fashion-classifier" $key) }}
{{- fail (printf "podLabels: %s is the chart's own label (selectors and network policies depend on it)" $key) }}
{{- end }}
{{- end }}
{{- range $key, $_ := .Values.podAnnotations }}
{{- if or (hasPrefix "checksum/" $key) (hasPrefix "prometheus.io/" $key) }}
{{- fail (printf "podAnnotations: %s is the chart's own annotation" $key) }}
{{- end }}
{{- end }}
{{- $own := include "fashion-classifier.configKeys" . | fromYaml }}
{{- range $key, $_ := .Values.config.extraEnv }}
{{- if hasKey $own $key }}
{{- fail (printf "config.extraEnv: %s is set by the chart (see values.yaml for its own value)" $key) }}
{{- end }}
{{- end }}
{{- if has (int .Values.config.grpcPort) (list 8000 9464) }}
{{- fail (printf "config.grpcPort %d is taken: the pods serve HTTP on 8000 and metrics on 9464" (int .Values.config.grpcPort)) }}
{{- end }}
{{- if and .Values.config.grpcPort (eq (int .Values.config.grpcPort) (int .Values.service.port)) }}
{{- fail (printf "config.grpcPort %d is service.port too: the Service would list one port twice" (int .Values.config.grpcPort)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas cannot exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.training.data.hostPath .Values.training.data.existingClaim }}
{{- fail "training.data: set hostPath or existingClaim, not both" }}
{{- end }}
{{- if and .Values.httpRoute.enabled (empty .Values.httpRoute.parentRefs) }}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs: the Gateway(s) the route attaches to" }}
{{- end }}
{{- with .Values.autoscaling.keda }}{{ if .enabled }}
{{- if not $.Values.autoscaling.enabled }}
{{- fail "autoscaling.keda.enabled needs autoscaling.enabled (its replica bounds and CPU target)" }}
{{- end }}
{{- if not .prometheusUrl }}
{{- fail "autoscaling.keda.enabled needs autoscaling.keda.prometheusUrl" }}
{{- end }}
{{- if not $.Values.metrics.serviceMonitor.enabled }}
{{- fail "autoscaling.keda.enabled needs metrics.serviceMonitor.enabled: its query reads the series that ServiceMonitor labels" }}
{{- end }}
{{- end }}{{ end }}
{{- if and .Values.topologySpreadConstraints (include "fashion-classifier.colocate" .) }}
{{- fail "topologySpreadConstraints need modelStore.accessMode ReadWriteMany: with ReadWriteOnce every classifier pod runs on the store's node" }}
{{- end }}
{{- include "fashion-classifier.checkCassandraVolume" . }}
{{- end }}

{{/* The rows a TTL keeps must fit each node's volume (formula: values.yaml, cassandra.persistence). */}}
{{- define "fashion-classifier.checkCassandraVolume" -}}
{{- $c := .Values.cassandra }}
{{- $rate := float64 $c.persistence.sizing.predictionsPerSecond }}
{{- if and $c.enabled (gt $rate 0.0) }}
{{- if eq (int $c.ttlDays) 0 }}
{{- fail "cassandra.ttlDays is 0 (rows kept forever): no cassandra.persistence.size can hold them; set a TTL, or cassandra.persistence.sizing.predictionsPerSecond: 0 to skip the size check" }}
{{- end }}
{{- $perNode := divf (mulf $rate 86400 (int $c.ttlDays) (int $c.persistence.sizing.rowBytes) (int $c.replicationFactor)) (int $c.replicas) }}
{{- $size := include "fashion-classifier.bytes" $c.persistence.size | float64 }}
{{- if gt $perNode (mulf $size 0.6) }}
{{- fail (printf "cassandra.persistence.size %v cannot hold %v days of rows at %v predictions/s: each node keeps %.2f GiB (rate x 86400 x ttlDays x rowBytes x replicationFactor / replicas), which must stay within 60%% of its volume: ask for at least %.2f GiB" $c.persistence.size $c.ttlDays $c.persistence.sizing.predictionsPerSecond (divf $perNode 1073741824) (divf $perNode 0.6 1073741824)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Bytes in a Kubernetes quantity of the forms values.schema.json admits: 5Gi, 500Mi, 10G, 1e3... */}}
{{- define "fashion-classifier.bytes" -}}
{{- $q := toString . }}
{{- $unit := regexFind "(Ki|Mi|Gi|Ti|k|M|G|T|m)$" $q }}
{{- $scale := get (dict "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "k" 1000.0 "M" 1e6 "G" 1e9 "T" 1e12 "m" 0.001 "" 1.0) $unit }}
{{- mulf (float64 (trimSuffix $unit $q)) $scale }}
{{- end }}

{{/* Pod security context of the application's pods (the image's user app, uid 10001). */}}
{{- define "fashion-classifier.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "fashion-classifier.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* Cassandra login of a pod: (dict "ctx" $ "role" "app"|"admin"), nothing when auth is off.
The migration Job (role admin) also gets the application role it creates. */}}
{{- define "fashion-classifier.cassandraCredentials" -}}
{{- if include "fashion-classifier.cassandraAuth" .ctx }}
{{- $secret := include "fashion-classifier.cassandraSecretName" . }}
- name: FC_CASSANDRA_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: username
- name: FC_CASSANDRA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: password
{{- if eq .role "admin" }}
{{- $app := include "fashion-classifier.cassandraSecretName" (dict "ctx" .ctx "role" "app") }}
- name: FC_CASSANDRA_APP_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $app }}
      key: username
- name: FC_CASSANDRA_APP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $app }}
      key: password
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when the claims the pods share are ReadWriteOnce(Pod): such a volume attaches to one
node at a time, so every pod that mounts one must run on the same node (ReadWriteMany: spread). */}}
{{- define "fashion-classifier.colocate" -}}
{{- if ne .Values.modelStore.accessMode "ReadWriteMany" }}true{{ end }}
{{- end }}

{{/* Access mode of the spool claim: the model store's (RWX when it is, RWO otherwise: one claim
per pod would leave a deleted pod's rows where no other pod looks). */}}
{{- define "fashion-classifier.spoolAccessMode" -}}
{{- if eq .Values.modelStore.accessMode "ReadWriteMany" }}ReadWriteMany{{ else }}ReadWriteOnce{{ end }}
{{- end }}

{{/* The label every pod mounting the shared claims carries when they must share a node: the
classifier pods, the training Job's pod and the Jobs `fashion-classifier cluster train` copies from it. */}}
{{- define "fashion-classifier.colocationLabel" -}}
fashion-classifier.dev/rwo-volumes: "true"
{{- end }}

{{/* Required affinity of those pods to each other, on one node. It cannot leave a pod Pending
for want of a partner: while no running pod carries the label, the scheduler lets a pod that
matches its own term go to any node (the first pod, whether a classifier or the training Job's),
and every later one joins that node. Finished pods (a done training Job) are no anchor. */}}
{{- define "fashion-classifier.colocationAffinity" -}}
affinity:
  podAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "fashion-classifier.selectorLabels" (dict "ctx" .) | nindent 12 }}
            {{- include "fashion-classifier.colocationLabel" . | nindent 12 }}
{{- end }}

{{/* Affinity of the classifier pods: the user's (values affinity), plus the ReadWriteOnce colocation. */}}
{{- define "fashion-classifier.classifierAffinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) }}
{{- if include "fashion-classifier.colocate" . }}
{{- $own := (fromYaml (include "fashion-classifier.colocationAffinity" .)).affinity.podAffinity }}
{{- $pod := deepCopy (get $affinity "podAffinity" | default dict) }}
{{- $key := "requiredDuringSchedulingIgnoredDuringExecution" }}
{{- $_ := set $pod $key (concat (get $pod $key | default list) (get $own $key)) }}
{{- $_ := set $affinity "podAffinity" $pod }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Label matchers of the release's series in a Prometheus that scrapes it through the chart's
ServiceMonitor (which adds namespace and service). */}}
{{- define "fashion-classifier.prometheusSelector" -}}
{{- $service := printf "%s-metrics" (include "fashion-classifier.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- printf "namespace=%q,service=%q" .Release.Namespace $service }}
{{- end }}

{{/* The ServiceAccount of the classifier pods and the Jobs. */}}
{{- define "fashion-classifier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fashion-classifier.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Pull secrets on a pod spec: the created ServiceAccount carries them, a user's may not. */}}
{{- define "fashion-classifier.podImagePullSecrets" -}}
{{- if and .Values.imagePullSecrets (not .Values.serviceAccount.create) }}
imagePullSecrets:
  {{- toYaml .Values.imagePullSecrets | nindent 2 }}
{{- end }}
{{- end }}

{{/* Training data of the Job: "true" when it reads files from a volume instead of downloading. */}}
{{- define "fashion-classifier.trainingData" -}}
{{- with .Values.training.data }}{{ if or .hostPath .existingClaim }}true{{ end }}{{ end }}
{{- end }}

{{/* Resources of a short store command (seeding, a rollout move): a Python process without NumPy. */}}
{{- define "fashion-classifier.smallJobResources" -}}
requests:
  cpu: 50m
  memory: 32Mi
limits:
  cpu: 500m
  memory: 128Mi
{{- end }}

{{/* The settings the chart itself gives every pod (the ConfigMap's keys before config.extraEnv). */}}
{{- define "fashion-classifier.configKeys" -}}
FC_HOST: "0.0.0.0"
FC_PORT: "8000"
FC_GRPC_PORT: {{ int .Values.config.grpcPort | quote }}
FC_WORKERS: {{ .Values.config.workers | quote }}
FC_MAX_UPLOAD_BYTES: {{ int .Values.config.maxUploadBytes | quote }}
FC_MODEL_DIR: /models
FC_RELOAD_INTERVAL: {{ .Values.config.reloadInterval | quote }}
FC_PREDLOG: {{ .Values.config.predlog | quote }}
FC_LOG_FORMAT: {{ .Values.config.logFormat | quote }}
{{- if eq .Values.config.predlog "sqlite" }}
FC_SQLITE_PATH: /var/lib/fashion-classifier/predictions.sqlite3
{{- end }}
FC_CASSANDRA_HOSTS: {{ include "fashion-classifier.cassandraHosts" . | quote }}
{{- if .Values.cassandra.enabled }}
FC_CASSANDRA_PORT: "9042"
FC_CASSANDRA_KEYSPACE: fashion
FC_CASSANDRA_LOCAL_DC: {{ .Values.cassandra.datacenter | quote }}
FC_CASSANDRA_REPLICATION: {{ .Values.cassandra.replicationFactor | quote }}
{{- else }}
{{- with .Values.externalCassandra }}
FC_CASSANDRA_PORT: {{ .port | quote }}
FC_CASSANDRA_KEYSPACE: {{ .keyspace | quote }}
FC_CASSANDRA_LOCAL_DC: {{ .localDC | quote }}
FC_CASSANDRA_REPLICATION: {{ .replicationFactor | quote }}
# Another tool (an operator) runs this cluster's roles and system_auth: migrate leaves them.
FC_CASSANDRA_MANAGE_AUTH: "false"
{{- if .tls.enabled }}
FC_CASSANDRA_TLS: "true"
{{- if .tls.caSecret }}
FC_CASSANDRA_CA_FILE: /etc/fashion-classifier/cassandra-ca/ca.crt
{{- end }}
{{- end }}
{{- end }}
{{- end }}
FC_CASSANDRA_TTL_DAYS: {{ .Values.cassandra.ttlDays | quote }}
FC_SPOOL_DIR: /var/lib/fashion-classifier/spool
PROMETHEUS_MULTIPROC_DIR: /run/prometheus
{{- end }}
