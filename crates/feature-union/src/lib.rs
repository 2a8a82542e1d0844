//! No code. This package's manifest turns on the union of the workspace's dependency features
//! for a build of one package alone; see its Cargo.toml.
