//! End-to-end tests of the `emotions` binary.

mod bad_input;
mod classify_embeddings;
mod compat;
mod durable;
mod encoders;
mod isa;
mod layout;
mod long_texts;
mod serve;
mod streaming;
mod tei_routes;
mod texts;
mod training;
mod tuned;
mod util;
