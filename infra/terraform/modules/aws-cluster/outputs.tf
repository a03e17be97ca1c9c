output "replica_public_addresses" {
  value = aws_instance.replica[*].public_ip
}

output "replica_private_addresses" {
  value = aws_instance.replica[*].private_ip
}

output "client_public_addresses" {
  value = aws_instance.client[*].public_ip
}

output "client_private_addresses" {
  value = aws_instance.client[*].private_ip
}

output "ssh_user" {
  description = "Debian's images log in as admin."
  value       = "admin"
}
