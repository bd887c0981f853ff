variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Name of the EKS cluster and prefix of everything else."
  type        = string
  default     = "magnetar"
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (1.30 or later)."
  type        = string
  default     = "1.31"
}

variable "admin_cidrs" {
  description = "Networks that may reach the Kubernetes API from the internet: where you run terraform and kubectl, e.g. [\"203.0.113.7/32\"]."
  type        = list(string)
}

variable "image_registry" {
  description = "Where you pushed the images built by `make images`, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com (images are <registry>/magnetar-meta etc.)."
  type        = string
}

variable "image_tag" {
  description = "Tag of every image (`make images` tags the version and dev)."
  type        = string
  default     = "0.1.0"
}

variable "offload_bucket" {
  description = "Name of the offload bucket; null derives one from the name and the account id."
  type        = string
  default     = null
}

variable "auth_secret_name" {
  description = "A Secret in the magnetar namespace with a token secret key under secret.key (make it with `magnetar tokens create-secret-key`); null leaves authentication off."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every AWS resource."
  type        = map(string)
  default     = { "app.kubernetes.io/part-of" = "magnetar" }
}
