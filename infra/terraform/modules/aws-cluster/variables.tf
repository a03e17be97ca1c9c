variable "name" {
  description = "Prefix of every resource's Name tag."
  type        = string
  default     = "bftbench"
}

variable "replica_count" {
  description = "Replica hosts (4 for BFT with f = 1; 3 for Raft)."
  type        = number
  default     = 4

  validation {
    condition     = var.replica_count >= 1
    error_message = "replica_count must be at least 1."
  }
}

variable "client_count" {
  description = "Client (load generator) hosts."
  type        = number
  default     = 1

  validation {
    condition     = var.client_count >= 1
    error_message = "client_count must be at least 1."
  }
}

variable "replica_instance_type" {
  type    = string
  default = "c6i.xlarge"
}

variable "client_instance_type" {
  type    = string
  default = "c6i.2xlarge"
}

variable "ami" {
  description = "AMI for every host; null picks the latest Debian 12 amd64 image."
  type        = string
  default     = null
}

variable "ssh_public_key" {
  description = "OpenSSH public key installed for the login user."
  type        = string
}

variable "ssh_cidr" {
  description = "Addresses allowed to reach port 22 (your own address, as a /32)."
  type        = string

  validation {
    condition     = can(cidrhost(var.ssh_cidr, 0))
    error_message = "ssh_cidr must be a CIDR block such as 203.0.113.7/32."
  }
}

variable "vpc_cidr" {
  type    = string
  default = "10.42.0.0/16"
}

variable "availability_zones" {
  description = "Zones to spread replicas over, round-robin (one zone: all in the first). Clients go in the first."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 1
    error_message = "Give at least one availability zone."
  }
}
