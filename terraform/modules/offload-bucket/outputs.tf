output "bucket_name" {
  description = "The offload bucket's name (the chart's offload.bucket)."
  value       = aws_s3_bucket.offload.bucket
}

output "bucket_arn" {
  description = "The offload bucket's ARN."
  value       = aws_s3_bucket.offload.arn
}

output "region" {
  description = "The bucket's region (the chart's offload.region)."
  value       = aws_s3_bucket.offload.region
}

output "kms_key_arn" {
  description = "The KMS key objects are encrypted with; the brokers need kms:GenerateDataKey and kms:Decrypt on it."
  value       = local.kms_key_arn
}
