# The IAM role the brokers assume through IRSA: only the brokers' service
# account of one namespace may assume it, and it may only list the offload
# bucket and read, write and delete its objects. (The brokers name objects
# <uuid>-ledger-<id> at the bucket's root, so the bucket is the unit of
# isolation: one per Magnetar cluster.)

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "broker" {
  name                 = var.name
  description          = "Magnetar brokers (${var.namespace}/${var.service_account}): tiered storage in ${var.bucket_arn}"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
  tags                 = var.tags
}

data "aws_iam_policy_document" "offload" {
  statement {
    sid       = "ListOffloadBucket"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
  }
  statement {
    sid = "ReadWriteOffloadedLedgers"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${var.bucket_arn}/*"]
  }
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "UseTheBucketKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "offload" {
  name   = "magnetar-offload"
  role   = aws_iam_role.broker.id
  policy = data.aws_iam_policy_document.offload.json
}
