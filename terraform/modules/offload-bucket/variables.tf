variable "bucket_name" {
  description = "Name of the S3 bucket the brokers offload closed ledgers to (globally unique)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for server-side encryption. Null creates a key for this bucket (with rotation)."
  type        = string
  default     = null
}

variable "abort_incomplete_multipart_days" {
  description = "Days after which unfinished multipart uploads (an offload cut short by a broker restart) are removed."
  type        = number
  default     = 2
}

variable "access_log_bucket" {
  description = "Bucket that receives S3 server access logs for this bucket; null for none."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the bucket with offloaded data still in it."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
