variable "name" {
  description = "Name of the IAM role."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider."
  type        = string
}

variable "oidc_issuer" {
  description = "The cluster's OIDC issuer without the https:// scheme, e.g. oidc.eks.eu-west-1.amazonaws.com/id/ABC123."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the Magnetar release."
  type        = string
}

variable "service_account" {
  description = "Name of the brokers' service account (the chart's serviceAccount.broker.name)."
  type        = string
}

variable "bucket_arn" {
  description = "ARN of the offload bucket."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the bucket's encryption; null if the bucket uses S3-managed keys."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
