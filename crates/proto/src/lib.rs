//! Generated gRPC code for haraft's wire protocols (see `proto/`).
//!
//! What it is for: the Raft transport service and the admin API, as tonic
//! clients and servers. What it must never do: hold logic; it changes only
//! when a .proto file does, so it is kept apart to spare rebuilds.

pub mod raft {
    tonic::include_proto!("haraft.raft.v1");
}

pub mod admin {
    tonic::include_proto!("haraft.admin.v1");
}
