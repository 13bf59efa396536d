//! Many `strictpy serve` nodes on one PostgreSQL: the multi-node harness
//! (`harness.rs`) and the tests of what must hold across nodes: work done
//! once per cluster, webhooks delivered once, limits and revocation, and
//! the queue in the database (`queue.rs`).

mod duties;
pub(crate) mod harness;
mod limits;
mod queue;
mod smoke;
mod webhooks;
