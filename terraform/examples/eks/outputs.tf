output "pulsar_url" {
  description = "Service URL for Pulsar clients in the VPC."
  value       = module.magnetar.pulsar_url
}

output "http_url" {
  description = "Admin REST URL (magnetar admin --url ...)."
  value       = module.magnetar.http_url
}

output "offload_bucket" {
  description = "The offload bucket."
  value       = module.offload_bucket.bucket_name
}

output "broker_role_arn" {
  description = "The IAM role the brokers assume."
  value       = module.broker_irsa.role_arn
}

output "kubeconfig_command" {
  description = "Points kubectl at the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}
