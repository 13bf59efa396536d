//! Which store errors mean "the database cannot take this now" (a full
//! disk, a read-only or lost database, a server that is down or shutting
//! down) as opposed to a statement that is wrong: the first kind is worth
//! retrying and is answered `503`, never `500`. Decided from typed error
//! codes (SQLite result codes, PostgreSQL SQLSTATEs), never from messages.

use rusqlite::ErrorCode;

use crate::StoreError;

impl StoreError {
    /// True when the database is (for now) unable to serve: SQLite's disk is
    /// full, I/O failed, the file turned read-only or cannot be opened, or it
    /// stayed locked past the busy timeout; for PostgreSQL a lost or refused
    /// connection, a pool timeout, SQLSTATE class `53` (insufficient
    /// resources: disk full, out of memory, too many connections), `25006`
    /// (read-only transaction), `57P01`-`57P03` (administrator or crash
    /// shutdown, cannot connect now) and class `08` (connection exception).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(err) => sqlite_unavailable(err),
            Self::Postgres(err) => err.code().is_some_and(|c| sqlstate_unavailable(c.code())),
            Self::Config(_)
            | Self::Corrupt(_)
            | Self::DataDir { .. }
            | Self::Join(_)
            | Self::Crypto(_) => false,
        }
    }
}

/// SQLite's result codes for a database that cannot be written (or read)
/// right now.
fn sqlite_unavailable(err: &rusqlite::Error) -> bool {
    match err {
        rusqlite::Error::SqliteFailure(e, _) => matches!(
            e.code,
            ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
        ),
        _ => false,
    }
}

/// SQLSTATEs (see PostgreSQL's appendix A) of a server that cannot serve
/// now, as opposed to one refusing a statement.
fn sqlstate_unavailable(code: &str) -> bool {
    code.starts_with("53")
        || code.starts_with("08")
        || matches!(code, "25006" | "57P01" | "57P02" | "57P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes() {
        let failure = |code| {
            StoreError::Database(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error {
                    code,
                    extended_code: 0,
                },
                None,
            ))
        };
        assert!(failure(ErrorCode::DiskFull).is_unavailable());
        assert!(failure(ErrorCode::ReadOnly).is_unavailable());
        assert!(failure(ErrorCode::SystemIoFailure).is_unavailable());
        assert!(failure(ErrorCode::CannotOpen).is_unavailable());
        assert!(!failure(ErrorCode::ConstraintViolation).is_unavailable());
        assert!(!StoreError::Database(rusqlite::Error::QueryReturnedNoRows).is_unavailable());
        assert!(StoreError::Unavailable("pool timed out".into()).is_unavailable());
        assert!(!StoreError::Corrupt("bad json".into()).is_unavailable());
    }

    #[test]
    fn sqlstates() {
        for code in [
            "53100", "53200", "53300", "25006", "57P01", "57P02", "57P03", "08006",
        ] {
            assert!(sqlstate_unavailable(code), "{code}");
        }
        for code in ["23505", "42P01", "40001", "57014", "25P02"] {
            assert!(!sqlstate_unavailable(code), "{code}");
        }
    }
}
