variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "availability_zones" {
  type    = list(string)
  default = ["eu-west-1a"]
}

variable "name" {
  type    = string
  default = "bftbench"
}

variable "protocol" {
  description = "Checked against replica_count: bft needs 3f+1, raft at least 3."
  type        = string
  default     = "bft"
}

variable "replica_count" {
  type    = number
  default = 4
}

variable "client_count" {
  type    = number
  default = 1
}

variable "replica_instance_type" {
  type    = string
  default = "c6i.xlarge"
}

variable "client_instance_type" {
  type    = string
  default = "c6i.2xlarge"
}

variable "ssh_public_key" {
  type = string
}

variable "ssh_cidr" {
  type = string
}
