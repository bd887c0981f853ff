# The bucket brokers offload closed ledgers to. Offloaded objects are written
# once and deleted by the brokers when retention ends; nothing is overwritten.

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:A KMS key policy, not an IAM policy: the account administering its own key is AWS's default key policy; "*" there means this key.
  #checkov:skip=CKV_AWS_111:A KMS key policy: "*" is this key alone, and only the account (then IAM) and the named service are principals.
  #checkov:skip=CKV_AWS_356:A KMS key policy: its resource can only be "*" (this key).
  # The account administers the key; use is granted through IAM policies
  # (the brokers' role in modules/broker-irsa).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "offload" {
  count                   = var.kms_key_arn == null ? 1 : 0
  description             = "Magnetar offload bucket ${var.bucket_name}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

locals {
  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.offload[0].arn
}

resource "aws_s3_bucket" "offload" {
  #checkov:skip=CKV_AWS_21:Versioning off on purpose: offloaded ledgers are immutable, written once and deleted by the brokers when retention ends; versions would keep deleted data (cost) and protect nothing that is overwritten.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice per deployment (it doubles storage cost); add an aws_s3_bucket_replication_configuration where needed.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; the brokers track offloaded ledgers in their metadata.
  #checkov:skip=CKV_AWS_18:Access logging is optional (var.access_log_bucket) because the log bucket is organisation-specific.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "offload" {
  bucket = aws_s3_bucket.offload.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "offload" {
  bucket                  = aws_s3_bucket.offload.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "offload" {
  bucket = aws_s3_bucket.offload.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    # One data key per bucket, not per object: far fewer KMS calls.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "offload" {
  bucket = aws_s3_bucket.offload.id
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.offload.arn,
      "${aws_s3_bucket.offload.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "offload" {
  bucket = aws_s3_bucket.offload.id
  policy = data.aws_iam_policy_document.bucket.json
  # The public access block must exist first, or the policy could be public for a moment.
  depends_on = [aws_s3_bucket_public_access_block.offload]
}

resource "aws_s3_bucket_logging" "offload" {
  count         = var.access_log_bucket == null ? 0 : 1
  bucket        = aws_s3_bucket.offload.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${var.bucket_name}/"
}
