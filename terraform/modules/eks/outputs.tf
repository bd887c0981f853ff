output "cluster_name" {
  description = "The EKS cluster's name."
  value       = aws_eks_cluster.this.name
}

output "endpoint" {
  description = "The Kubernetes API's URL."
  value       = aws_eks_cluster.this.endpoint
}

output "certificate_authority_data" {
  description = "The API's CA certificate (base64 PEM)."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider, for IRSA trust policies."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "oidc_issuer" {
  description = "The OIDC issuer without https://, the prefix of IRSA condition keys."
  value       = local.oidc_issuer
}

output "broker_pool" {
  description = "Node selector of the broker node group (brokers and metadata voters)."
  value       = { (local.pool_label) = "broker" }
}

output "bookie_pool" {
  description = "Node selector and toleration of the bookie node group."
  value = {
    node_selector = { (local.pool_label) = "bookie" }
    toleration = {
      key      = local.bookie_taint.key
      operator = "Equal"
      value    = local.bookie_taint.value
      effect   = "NoSchedule"
    }
  }
}

output "ebs_csi_addon" {
  description = "The EBS CSI add-on, for depends_on of anything that needs volumes."
  value       = aws_eks_addon.ebs_csi.id
}
