//! Keeps a pooled slot's working set resident between jobs, so that a job
//! takes no page faults on the pages the jobs before it touched and the slot
//! reset needs no `madvise` (and so no cross-CPU TLB shootdown).
//!
//! Why this is needed: wasmtime 48 resets a pooled linear memory by asking
//! Linux (`PAGEMAP_SCAN`) for its written pages and copying the snapshot back
//! over them, but it asks for at most 32 runs of contiguous written pages.
//! Everything past the 32nd run is decommitted with `madvise(MADV_DONTNEED)`,
//! which unmaps it (a TLB shootdown on every other core running the process)
//! and makes the next job fault it in again, copying each page from the
//! snapshot. A Python job writes reference counts all over the snapshot's
//! heap, so a hello job leaves about 90 short runs with small gaps between
//! them, and the pages of the last 60 (its fresh allocations among them) were
//! faulted in again by every job: about 110 faults per job.
//!
//! The fix is on our side of the API: after a job, for the first jobs a slot
//! runs (and now and then later, as the work changes), read which pages of
//! its memory are private and present (`/proc/self/pagemap`, plain reads, no
//! privileges), and if they form more runs than wasmtime keeps, join the runs
//! across their smallest gaps by rewriting one byte of each gap page with its
//! own value. The gap page becomes a private copy with unchanged contents, so
//! the next reset sees fewer, longer runs, copies them all back, and unmaps
//! nothing. A joined gap page costs a 4 KiB copy at every reset, so only small
//! gaps are joined, within a budget.
//!
//! Nothing here changes what a job sees: the bytes written are the bytes that
//! were there, and wasmtime still restores every written page from the
//! snapshot before the slot's next job.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

/// Runs of written pages that wasmtime 48's slot reset keeps resident
/// (`MAX_REGIONS` in its `pagemap.rs`); past these it decommits.
const KEPT_RUNS: usize = 32;

/// How many runs grooming aims for, below [`KEPT_RUNS`], so that a later job
/// that writes a few new places still fits.
const TARGET_RUNS: usize = 30;

const _: () = assert!(TARGET_RUNS < KEPT_RUNS);

/// The longest gap (in pages) worth joining: a page kept resident that no job
/// touches costs a 4 KiB copy at every reset, a fault costs a copy plus the
/// kernel's fault path and a later unmap.
const MAX_GAP_PAGES: usize = 64;

/// The most gap pages one grooming may add.
const MAX_FILL_PAGES: usize = 512;

/// No grooming once a slot keeps this many private pages (4 MiB): every one
/// is copied back at each reset, so the resident set must stay small next to
/// what a fault-in would cost.
const MAX_PRIVATE_PAGES: usize = 1024;

/// Grooms the first this many jobs of each slot, while its working set
/// settles.
const WARM_JOBS: u64 = 8;

/// After warming, grooms one job in this many, so the runs follow the work.
const REGROOM_EVERY: u64 = 64;

/// The host page size this is written for. `/proc/self/pagemap` has one
/// entry per host page, so the module only acts where that is 4 KiB.
const PAGE: usize = 4096;

/// Per-sandbox grooming state.
#[derive(Debug)]
pub(crate) struct Groomer {
    /// `/proc/self/pagemap`, if it could be opened; `None` turns grooming off.
    pagemap: Option<std::fs::File>,
    /// Jobs seen per slot, keyed by the address of the slot's linear memory
    /// (a pooled slot keeps its address for the life of the engine).
    jobs: Mutex<HashMap<usize, u64>>,
}

impl Groomer {
    /// A groomer for a pooled sandbox, or an inert one (`enabled` false, or
    /// not Linux on x86-64, or no `/proc`).
    pub(crate) fn new(enabled: bool) -> Self {
        let supported = cfg!(all(target_os = "linux", target_arch = "x86_64"));
        let pagemap = if enabled && supported {
            std::fs::File::open("/proc/self/pagemap").ok()
        } else {
            None
        };
        Self {
            pagemap,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// Called with a finished job's linear memory, before its store is
    /// dropped (and the slot reset). Never fails: grooming is an optimisation
    /// and any error just skips it.
    pub(crate) fn after_job(&self, memory: &mut [u8]) {
        let Some(pagemap) = &self.pagemap else {
            return;
        };
        let base = memory.as_ptr() as usize;
        if !base.is_multiple_of(PAGE) {
            return;
        }
        let seen = {
            let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            let n = jobs.entry(base).or_insert(0);
            *n += 1;
            *n
        };
        if seen > WARM_JOBS && !seen.is_multiple_of(REGROOM_EVERY) {
            return;
        }
        let pages = memory.len() / PAGE;
        let Some(private) = private_pages(pagemap, base, pages) else {
            return;
        };
        if private.iter().filter(|p| **p).count() > MAX_PRIVATE_PAGES {
            return;
        }
        for page in gap_pages(&runs(&private)) {
            let at = page * PAGE;
            // A write of the byte already there: the page becomes this
            // process's private copy with the same contents. `black_box`
            // keeps the compiler from dropping the self-assignment.
            if let Some(byte) = memory.get(at).copied() {
                memory[at] = std::hint::black_box(byte);
            }
        }
    }
}

/// Which of `pages` pages from `base` are present and private (written since
/// the mapping was made, or zero-filled on write), read from the pagemap file.
fn private_pages(pagemap: &std::fs::File, base: usize, pages: usize) -> Option<Vec<bool>> {
    use std::os::unix::fs::FileExt;
    let mut raw = vec![0u8; pages.checked_mul(8)?];
    let offset = u64::try_from(base / PAGE).ok()?.checked_mul(8)?;
    pagemap.read_exact_at(&mut raw, offset).ok()?;
    Some(
        raw.chunks_exact(8)
            .map(|e| {
                let mut b = [0u8; 8];
                b.copy_from_slice(e);
                let entry = u64::from_le_bytes(b);
                // Bit 63: present. Bit 61: file-backed or shared (a page of
                // the snapshot image not yet copied).
                entry >> 63 & 1 == 1 && entry >> 61 & 1 == 0
            })
            .collect(),
    )
}

/// The runs of `true` in `private`, as half-open page ranges.
fn runs(private: &[bool]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, &p) in private.iter().enumerate() {
        if !p {
            continue;
        }
        match out.last_mut() {
            Some((_, end)) if *end == i => *end = i + 1,
            _ => out.push((i, i + 1)),
        }
    }
    out
}

/// The pages to write so that `runs` shrinks to [`TARGET_RUNS`] runs or
/// fewer, joining the smallest gaps first, each at most [`MAX_GAP_PAGES`]
/// long and [`MAX_FILL_PAGES`] in all. Nothing when the runs already fit.
fn gap_pages(runs: &[(usize, usize)]) -> Vec<usize> {
    if runs.len() <= TARGET_RUNS {
        return Vec::new();
    }
    let mut gaps: Vec<(usize, usize)> = runs
        .windows(2)
        .map(|w| (w[0].1, w[1].0))
        .filter(|(a, b)| b - a <= MAX_GAP_PAGES)
        .collect();
    gaps.sort_by_key(|(a, b)| b - a);
    let mut count = runs.len();
    let mut budget = MAX_FILL_PAGES;
    let mut pages = Vec::new();
    for (a, b) in gaps {
        if count <= TARGET_RUNS {
            break;
        }
        if b - a > budget {
            break;
        }
        budget -= b - a;
        count -= 1;
        pages.extend(a..b);
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_maximal() {
        let p = [false, true, true, false, true, false, false, true];
        assert_eq!(runs(&p), vec![(1, 3), (4, 5), (7, 8)]);
        assert!(runs(&[false; 4]).is_empty());
    }

    #[test]
    fn few_runs_need_no_grooming() {
        let r: Vec<_> = (0..TARGET_RUNS).map(|i| (i * 10, i * 10 + 1)).collect();
        assert!(gap_pages(&r).is_empty());
    }

    #[test]
    fn smallest_gaps_are_joined_first_down_to_the_target() {
        // 40 one-page runs; gap i (after run i) is i % 5 + 1 pages long, and
        // one gap is too long to join.
        let mut r = Vec::new();
        let mut at = 0;
        for i in 0..40 {
            r.push((at, at + 1));
            at += 1 + i % 5 + 1;
            if i == 3 {
                at += MAX_GAP_PAGES;
            }
        }
        let pages = gap_pages(&r);
        let mut private = vec![false; at];
        for &(a, b) in &r {
            private[a..b].iter_mut().for_each(|p| *p = true);
        }
        for &p in &pages {
            assert!(!private[p], "page {p} was already private");
            private[p] = true;
        }
        assert_eq!(runs(&private).len(), TARGET_RUNS);
        // 10 joins, of the shortest gaps: all 8 of 1 page, then 2 of 2.
        assert_eq!(pages.len(), 8 + 2 * 2);
    }
}
