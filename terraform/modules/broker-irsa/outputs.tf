output "role_arn" {
  description = "The role's ARN: the brokers' service account annotation eks.amazonaws.com/role-arn."
  value       = aws_iam_role.broker.arn
}

output "role_name" {
  description = "The role's name."
  value       = aws_iam_role.broker.name
}
