output "vpc_id" {
  description = "The VPC's id."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "Private subnets, one per zone: the cluster's nodes and internal load balancers."
  value       = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  description = "Public subnets, one per zone: internet-facing load balancers and the NAT gateway."
  value       = aws_subnet.public[*].id
}

output "cidr" {
  description = "The VPC's address range."
  value       = aws_vpc.this.cidr_block
}
