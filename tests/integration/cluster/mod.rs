//! Many `strictpy serve` nodes on one PostgreSQL: the multi-node harness
//! (`harness.rs`) and the tests of what must hold across nodes: work done
//! once per cluster, webhooks delivered once, limits and revocation.

mod duties;
pub(crate) mod harness;
mod limits;
mod smoke;
mod webhooks;
