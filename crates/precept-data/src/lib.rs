//! Data for precept: tokenisation, chat templates and crash-safe file output.

mod atomic;

pub use atomic::{write_atomic, write_atomic_with};
