//! # workloads
//!
//! What clients do (generators) and which model their history is checked against.
