variable "protocol" {
  description = "What the replica hosts run: bft (n = 3f+1), raft (n >= 3) or bare (one server)."
  type        = string
  default     = "bft"

  validation {
    condition     = contains(["bft", "raft", "bare"], var.protocol)
    error_message = "protocol must be bft, raft or bare."
  }
}

variable "replica_private_addresses" {
  description = "Addresses the replicas reach each other on (inside the cluster), in replica-id order."
  type        = list(string)

  validation {
    condition     = length(var.replica_private_addresses) >= 1
    error_message = "At least one replica host is needed."
  }
  validation {
    condition = var.protocol != "bft" || (
      length(var.replica_private_addresses) >= 4 && (length(var.replica_private_addresses) - 1) % 3 == 0
    )
    error_message = "BFT needs n = 3f+1 replica hosts (4, 7, 10, ...)."
  }
  validation {
    condition     = var.protocol != "raft" || length(var.replica_private_addresses) >= 3
    error_message = "Raft needs n >= 3 replica hosts."
  }
}

variable "replica_public_addresses" {
  description = "Addresses the harness reaches the replica hosts on over SSH, in the same order."
  type        = list(string)

  validation {
    condition     = length(var.replica_public_addresses) == length(var.replica_private_addresses)
    error_message = "replica_public_addresses and replica_private_addresses must have the same length."
  }
}

variable "client_private_addresses" {
  description = "Client hosts' addresses inside the cluster."
  type        = list(string)

  validation {
    condition     = length(var.client_private_addresses) >= 1
    error_message = "At least one client host is needed: the load generator runs there."
  }
}

variable "client_public_addresses" {
  description = "Client hosts' addresses for SSH, in the same order."
  type        = list(string)

  validation {
    condition     = length(var.client_public_addresses) == length(var.client_private_addresses)
    error_message = "client_public_addresses and client_private_addresses must have the same length."
  }
}

variable "ssh_user" {
  description = "Login user on every host."
  type        = string
  default     = "admin"
}

variable "ssh_port" {
  description = "sshd port on every host."
  type        = number
  default     = 22
}

variable "replica_port" {
  description = "Port each replica listens on."
  type        = number
  default     = 7000

  validation {
    condition     = var.replica_port > 0 && var.replica_port < 65536
    error_message = "replica_port must be a TCP port (1-65535)."
  }
}

variable "kv_port" {
  description = "Port of the separated KV server beside each replica (execution = remote)."
  type        = number
  default     = 7100

  validation {
    condition     = var.kv_port > 0 && var.kv_port < 65536 && var.kv_port != var.replica_port
    error_message = "kv_port must be a TCP port other than replica_port."
  }
}
