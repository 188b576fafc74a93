//! The models: registers, Porcupine's kv, and a store of independent objects.

pub mod keyed;
pub mod kv;
pub mod kv_string;
pub mod register;

pub use keyed::Keyed;
pub use kv::Kv;
pub use kv_string::KvString;
pub use register::Register;
