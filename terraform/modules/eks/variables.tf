variable "name" {
  description = "The EKS cluster's name."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes version of the control plane and nodes (the chart needs 1.30 or later)."
  type        = string
  default     = "1.31"
}

variable "subnet_ids" {
  description = "Private subnets (one per zone) for the control plane's interfaces and the nodes."
  type        = list(string)
}

variable "public_access_cidrs" {
  description = "Networks allowed to reach the Kubernetes API over the internet (where Terraform and kubectl run). Empty: private endpoint only, so Terraform must run inside the VPC."
  type        = list(string)
}

variable "broker_nodes" {
  description = "Node group for brokers and metadata voters (general purpose)."
  type = object({
    instance_types = list(string)
    min_size       = number
    desired_size   = number
    max_size       = number
    disk_gib       = number
  })
  default = {
    instance_types = ["m6i.xlarge"]
    min_size       = 3
    desired_size   = 3
    max_size       = 9
    disk_gib       = 50
  }
}

variable "bookie_nodes" {
  description = "Node group for bookies (storage-optimised; tainted so only bookies run there). Keep desired_size at least the chart's bookie.replicas: bookies never share a node."
  type = object({
    instance_types = list(string)
    min_size       = number
    desired_size   = number
    max_size       = number
    disk_gib       = number
  })
  default = {
    instance_types = ["i4i.xlarge"]
    min_size       = 3
    desired_size   = 4
    max_size       = 6
    disk_gib       = 50
  }
}

variable "log_retention_days" {
  description = "Retention of the control plane's logs in CloudWatch."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
