//! Many `strictpy serve` nodes on one PostgreSQL: the multi-node harness
//! (`harness.rs`) and the tests of what must hold across nodes.

pub(crate) mod harness;
mod smoke;
