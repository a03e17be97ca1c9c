//! Key-value App and YCSB generators: placeholder until the YCSB issue lands.
