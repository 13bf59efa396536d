//! Many `strictpy serve` nodes on one PostgreSQL: the multi-node harness
//! (`harness.rs`) and the tests of what must hold across nodes: work done
//! once per cluster, webhooks delivered once, limits and revocation, the
//! queue in the database (`queue.rs`), and live output and queue places
//! across nodes (`live.rs`).

mod duties;
pub(crate) mod harness;
mod limits;
mod live;
mod queue;
mod smoke;
mod webhooks;
