output "pulsar_url" {
  description = "Service URL for Pulsar clients (the brokers' internal load balancer)."
  value       = "pulsar://${local.broker_host}:6650"
}

output "http_url" {
  description = "Admin REST / lookup URL."
  value       = "http://${local.broker_host}:8080"
}

output "namespace" {
  description = "Namespace of the release."
  value       = helm_release.magnetar.namespace
}

output "release_name" {
  description = "Name of the Helm release."
  value       = helm_release.magnetar.name
}
