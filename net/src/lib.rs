//! Sockets and event loops: placeholder until the networked-replicas issue lands.
