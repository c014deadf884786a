{{/* Go-template twin of chart_sources/ethstats (benchmark only): same objects, Helm's engine. */}}
{{- define "ethstats.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.appVersion | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: ethstats
app.kubernetes.io/part-of: chainops
app.kubernetes.io/managed-by: chainops
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
{{- define "ethstats.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: ethstats
{{- end }}
{{- define "ethstats.podLabels" -}}
{{ include "ethstats.selector" . }}
app.kubernetes.io/version: {{ .Values.appVersion | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: chainops
{{- end }}
