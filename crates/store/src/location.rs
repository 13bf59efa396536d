//! Which store to open: no URL is SQLite in the data dir (the embedded
//! default), `sqlite://PATH` a SQLite file elsewhere, and `postgres://...`
//! (or `postgresql://...`) a PostgreSQL database.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{JobStore, PgOptions, PostgresStore, SqliteStore, StoreError, crypto::Keyring};

/// Where the store lives.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// SQLite in this data dir (`strictpy.db`), created if needed.
    DataDir(PathBuf),
    /// SQLite in this database file, whose directory must exist.
    SqliteFile(PathBuf),
    /// PostgreSQL.
    Postgres(PgOptions),
}

impl StoreLocation {
    /// The location `url` names; without one, SQLite in `data_dir`.
    /// `sqlite://PATH` takes PATH as the database file, or as a directory
    /// holding `strictpy.db` when it is one; a relative PATH is relative to
    /// the working directory (`sqlite://./jobs.db`), an absolute one starts
    /// with a third slash (`sqlite:///var/lib/strictpy/jobs.db`).
    pub fn from_url(url: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Self::DataDir(data_dir.to_owned()));
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Config(
                    "sqlite:// needs a path, as in sqlite:///var/lib/strictpy/strictpy.db".into(),
                ));
            }
            let path = PathBuf::from(path);
            return Ok(if path.is_dir() {
                Self::DataDir(path)
            } else {
                Self::SqliteFile(path)
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(PgOptions {
                url: url.to_owned(),
                ..PgOptions::default()
            }));
        }
        Err(StoreError::Config(format!(
            "unsupported store URL {}: use postgres://... or sqlite://PATH, or none for SQLite \
             in the data dir",
            without_password(url)
        )))
    }

    /// A description for logs and errors, never with a password.
    pub fn describe(&self) -> String {
        match self {
            Self::DataDir(dir) => format!("sqlite in {}", dir.join(crate::DB_FILE).display()),
            Self::SqliteFile(path) => format!("sqlite in {}", path.display()),
            Self::Postgres(options) => without_password(&options.url),
        }
    }

    /// Opens the store: SQLite on the blocking pool, Postgres over the
    /// network. Migrations run and the keys are checked either way.
    pub async fn open(&self, keys: Arc<Keyring>) -> Result<Arc<dyn JobStore>, StoreError> {
        let sqlite = |open: Box<dyn FnOnce() -> Result<SqliteStore, StoreError> + Send>| async {
            let store = tokio::task::spawn_blocking(open)
                .await
                .map_err(|e| StoreError::Join(e.to_string()))??;
            Ok::<Arc<dyn JobStore>, StoreError>(Arc::new(store))
        };
        match self {
            Self::DataDir(dir) => {
                let dir = dir.clone();
                sqlite(Box::new(move || SqliteStore::open(&dir, keys))).await
            }
            Self::SqliteFile(path) => {
                let path = path.clone();
                sqlite(Box::new(move || SqliteStore::open_file(&path, keys))).await
            }
            Self::Postgres(options) => Ok(Arc::new(PostgresStore::connect(options, keys).await?)),
        }
    }
}

/// `url` with the password of its `user:password@` part replaced by `***`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first '/', '?' or '#'; the userinfo at its
    // last '@' (a password may itself hold an '@' when not percent-encoded).
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        let data = Path::new("/nonexistent/data");
        assert!(matches!(
            StoreLocation::from_url(None, data),
            Ok(StoreLocation::DataDir(d)) if d == data
        ));
        assert!(matches!(
            StoreLocation::from_url(Some("  "), data),
            Ok(StoreLocation::DataDir(_))
        ));
        assert!(matches!(
            StoreLocation::from_url(Some("sqlite:///nonexistent/jobs.db"), data),
            Ok(StoreLocation::SqliteFile(p)) if p == Path::new("/nonexistent/jobs.db")
        ));
        let dir = std::env::temp_dir();
        let url = format!("sqlite://{}", dir.display());
        assert!(matches!(
            StoreLocation::from_url(Some(&url), data),
            Ok(StoreLocation::DataDir(p)) if p == dir
        ));
        let pg = StoreLocation::from_url(Some("postgresql://u:pw@db:5433/jobs"), data)
            .expect("postgres");
        assert_eq!(pg.describe(), "postgresql://u:***@db:5433/jobs");
        let err =
            StoreLocation::from_url(Some("mysql://u:hunter2@db/x"), data).expect_err("unsupported");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(StoreLocation::from_url(Some("sqlite://"), data).is_err());
    }

    #[test]
    fn passwords_are_hidden_and_the_rest_is_kept() {
        for (url, shown) in [
            ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:p@ss@h:1/db?x=1",
                "postgres://u:***@h:1/db?x=1",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("host=h user=u", "host=h user=u"),
        ] {
            assert_eq!(without_password(url), shown, "{url}");
        }
    }
}
