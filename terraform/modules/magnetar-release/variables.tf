variable "release_name" {
  description = "Helm release name."
  type        = string
  default     = "magnetar"
}

variable "namespace" {
  description = "Namespace to install into (created if missing)."
  type        = string
  default     = "magnetar"
}

variable "chart_path" {
  description = "Path of the chart (helm/magnetar of this repository)."
  type        = string
  default     = null
}

variable "cluster_name" {
  description = "Name of the Magnetar cluster (the chart's clusterName)."
  type        = string
  default     = "magnetar"
}

variable "image_registry" {
  description = "Registry and path prefix the images were pushed to, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com; the images are <prefix>/magnetar-meta etc."
  type        = string
}

variable "image_tag" {
  description = "Tag of every image (make images tags the version and dev)."
  type        = string
  default     = "0.1.0"
}

variable "broker_service_account" {
  description = "Name of the brokers' service account; the IRSA role trusts exactly this name."
  type        = string
  default     = "magnetar-broker"
}

variable "broker_role_arn" {
  description = "IAM role the brokers assume through IRSA (modules/broker-irsa)."
  type        = string
}

variable "offload" {
  description = "Where brokers offload closed ledgers: the bucket (one per Magnetar cluster) and its region."
  type = object({
    bucket = string
    region = string
  })
}

variable "meta_replicas" {
  description = "Metadata voters: 3, 5 or 7 (fixed once installed). Each needs its own node in the broker pool."
  type        = number
  default     = 3
  validation {
    condition     = contains([3, 5, 7], var.meta_replicas)
    error_message = "meta_replicas must be 3, 5 or 7."
  }
}

variable "bookie_replicas" {
  description = "Bookies; each needs its own node in the bookie pool."
  type        = number
  default     = 4
}

variable "broker_replicas" {
  description = "Brokers: the autoscaler's minimum and maximum."
  type = object({
    min = number
    max = number
  })
  default = {
    min = 3
    max = 9
  }
}

variable "quorum" {
  description = "Bookie ensemble, write quorum and ack quorum of new ledgers (ack <= write <= ensemble <= bookie_replicas)."
  type = object({
    ensemble = number
    write    = number
    ack      = number
  })
  default = {
    ensemble = 3
    write    = 3
    ack      = 2
  }
}

variable "volumes" {
  description = "Volume sizes of the metadata voters and bookies."
  type = object({
    meta_gib           = number
    bookie_journal_gib = number
    bookie_ledgers_gib = number
  })
  default = {
    meta_gib           = 20
    bookie_journal_gib = 50
    bookie_ledgers_gib = 500
  }
}

variable "journal_iops" {
  description = "Provisioned IOPS of the bookies' gp3 journal volumes (every acknowledged entry is fsynced there)."
  type        = number
  default     = 6000
}

variable "broker_node_selector" {
  description = "Node selector of the broker node pool (modules/eks output broker_pool)."
  type        = map(string)
  default     = {}
}

variable "bookie_node_selector" {
  description = "Node selector of the bookie node pool."
  type        = map(string)
  default     = {}
}

variable "bookie_toleration" {
  description = "Toleration for the bookie pool's taint; null if it has none."
  type = object({
    key      = string
    operator = string
    value    = string
    effect   = string
  })
  default = null
}

variable "auth_secret_name" {
  description = "Secret (in the namespace) holding the token secret key under secret.key; null leaves authentication off."
  type        = string
  default     = null
}

variable "superuser_roles" {
  description = "Roles that may do everything when authentication is on."
  type        = list(string)
  default     = ["admin"]
}

variable "client_cidrs" {
  description = "Networks allowed through the brokers' internal network load balancer."
  type        = list(string)
}

variable "extra_values" {
  description = "More chart values (YAML), applied after this module's."
  type        = string
  default     = ""
}
