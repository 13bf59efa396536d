//! Encryption at rest: a [`Keyring`] of XChaCha20-Poly1305 keys that seals
//! the job columns holding caller data (code, stdin, context, stdout, stderr,
//! result) before they reach the database.
//!
//! A sealed value is text, so it fits the existing `TEXT` columns on SQLite
//! and Postgres alike: `enc1:<key-id>:<base64url(nonce || ciphertext)>`. The
//! key id names the key that sealed it, which is what makes rotation work:
//! the first key of the ring seals, every key opens. The 24-byte nonce is
//! random per value; XChaCha's nonce is long enough that random nonces never
//! collide in practice. The associated data binds a ciphertext to its row and
//! column, so a value copied into another row does not open.
//!
//! Keys come from `STRICTPY_ENCRYPTION_KEY`, an operator's key file, or a key
//! file generated in the data dir on first start ([`Keyring::load_or_create`]).

use std::{
    fmt,
    io::Write as _,
    path::{Path, PathBuf},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    KeyInit as _, XChaCha20Poly1305, XNonce,
    aead::{Aead as _, Payload},
};
use rand::{TryRng as _, rngs::SysRng};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::StoreError;

/// The environment variable that holds the keys; it wins over any key file.
pub const KEY_ENV: &str = "STRICTPY_ENCRYPTION_KEY";

/// The key file generated in the data dir when no key is configured.
pub const KEY_FILE: &str = "encryption-keys";

/// The prefix of every sealed value; a new format would get `enc2:`.
const PREFIX: &str = "enc1:";

/// Bytes of random nonce in front of every ciphertext.
const NONCE_LEN: usize = 24;

/// Bytes of a key.
const KEY_LEN: usize = 32;

/// Longest key id; ids are stored in every sealed value, so keep them short.
const MAX_ID_LEN: usize = 32;

/// Why the keys could not be loaded. No variant ever carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// One entry of a key list is malformed.
    #[error("entry {entry}: {reason}")]
    Parse {
        /// The entry's position, counting from 1.
        entry: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The key list holds no key at all.
    #[error("no encryption key in it")]
    Empty,
    /// The keys from one source are invalid.
    #[error("{origin}: {source}")]
    Invalid {
        /// Where the keys came from: the variable's name or the file's path.
        origin: String,
        /// What is wrong with them.
        source: Box<KeyError>,
    },
    /// A key file could not be read, created or written.
    #[error("encryption key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file others can read: its keys must be treated as leaked, so
    /// strictpy refuses to use them rather than widen the leak.
    #[error(
        "encryption key file {path} has mode {mode:03o}; it must not be accessible to group \
         or others (chmod 600 it)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The operating system's random generator failed.
    #[error("cannot generate an encryption key: {0}")]
    Random(String),
}

/// One key of the ring.
struct Key {
    /// The id stored next to every value it seals.
    id: String,
    /// The cipher, which holds the key and zeroizes it when dropped.
    cipher: XChaCha20Poly1305,
}

/// The encryption keys: the first seals new values, every one opens.
pub struct Keyring {
    /// The keys in the order given; never empty.
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    /// Ids only: key material must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Parses a key list: entries separated by newlines or commas, each
    /// `<key-id>:<64 hex chars>` or bare 64 hex chars, whose id is then the
    /// first 8 hex chars of the SHA-256 of the key's 32 bytes. Blank lines and
    /// lines starting with `#` are skipped. The first entry seals new values.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        let mut keys: Vec<Key> = Vec::new();
        for (index, entry) in entries.enumerate() {
            let entry_no = index + 1;
            let fail = |reason: &str| KeyError::Parse {
                entry: entry_no,
                reason: reason.to_owned(),
            };
            let (id, hex_key) = match entry.split_once(':') {
                Some((id, hex_key)) => (Some(id.trim()), hex_key.trim()),
                None => (None, entry),
            };
            if hex_key.len() != 2 * KEY_LEN {
                return Err(fail("a key must be 64 hex characters (32 bytes)"));
            }
            let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
            hex::decode_to_slice(hex_key, bytes.as_mut_slice())
                .map_err(|_| fail("a key must be 64 hex characters (32 bytes)"))?;
            let id = match id {
                Some(id) => {
                    check_id(id).map_err(|reason| fail(&reason))?;
                    id.to_owned()
                }
                None => derived_id(bytes.as_slice()),
            };
            if keys.iter().any(|k| k.id == id) {
                return Err(fail(&format!("key id {id} appears twice")));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(bytes.as_slice())
                .map_err(|_| fail("a key must be 32 bytes"))?;
            keys.push(Key { id, cipher });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self { keys })
    }

    /// The keys the server and the CLI use, from the one place they are
    /// configured: `STRICTPY_ENCRYPTION_KEY` if set, else `key_file`, else
    /// `<data_dir>/encryption-keys` (generated on first start).
    pub fn from_env(data_dir: &Path, key_file: Option<&Path>) -> Result<Self, KeyError> {
        let env = std::env::var(KEY_ENV).ok().map(Zeroizing::new);
        Self::load_or_create(data_dir, env.as_deref().map(String::as_str), key_file)
    }

    /// Loads the keys from `env_value` (the contents of
    /// `STRICTPY_ENCRYPTION_KEY`) if given, else from `key_file`, else from
    /// `<data_dir>/encryption-keys`, generating that file (mode 0600, 32
    /// bytes from the OS generator) when it does not exist yet. A key file
    /// that group or others may access is refused.
    ///
    /// An empty `env_value` is an error rather than "unset": a variable that
    /// a deployment meant to fill but left empty must not silently switch to
    /// a generated key.
    pub fn load_or_create(
        data_dir: &Path,
        env_value: Option<&str>,
        key_file: Option<&Path>,
    ) -> Result<Self, KeyError> {
        let ring = if let Some(text) = env_value {
            Self::parse(text).map_err(|e| e.within(KEY_ENV))?
        } else if let Some(path) = key_file {
            // An operator's own file must exist: generating one in its place
            // would hide a typo in the path behind a brand-new key.
            Self::read_file(path)?
        } else {
            let path = data_dir.join(KEY_FILE);
            match Self::read_file(&path) {
                Err(KeyError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Self::generate(data_dir, &path)?
                }
                other => other?,
            }
        };
        tracing::info!(
            current = ring.current_id(),
            keys = ring.keys.len(),
            "loaded the encryption keys"
        );
        Ok(ring)
    }

    /// Reads and parses a key file after checking its permissions.
    fn read_file(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        check_private(path, &file)?;
        let mut text = Zeroizing::new(String::new());
        std::io::Read::read_to_string(&mut &file, &mut text).map_err(io)?;
        Self::parse(&text).map_err(|e| e.within(&path.display().to_string()))
    }

    /// Writes a new key file at `path` and loads it. The file appears whole
    /// or not at all: the key goes to a private temporary file, is synced,
    /// then hard-linked into place, which fails if another process won the
    /// race (its key is then used).
    fn generate(data_dir: &Path, path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        crate::create_data_dir(data_dir).map_err(io)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        SysRng
            .try_fill_bytes(key.as_mut_slice())
            .map_err(|e| KeyError::Random(e.to_string()))?;
        let id = derived_id(key.as_slice());
        let text = Zeroizing::new(format!(
            "# strictpy encryption keys. The first key encrypts new job data; every key\n\
             # decrypts. To rotate, put a new key on the first line and keep the old ones.\n\
             # Back this file up: without it the jobs in strictpy.db cannot be read.\n\
             {id}:{}\n",
            Zeroizing::new(hex::encode(key.as_slice())).as_str()
        ));
        let tmp = data_dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
        let written =
            write_private(&tmp, text.as_bytes()).and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Self::read_file(path);
            }
            Err(e) => return Err(io(e)),
        }
        sync_dir(data_dir);
        tracing::info!(
            path = %path.display(),
            key_id = %id,
            "generated an encryption key; back this file up, the job data cannot be read without it"
        );
        Self::parse(&text).map_err(|e| e.within(&path.display().to_string()))
    }

    /// The id of the key that seals new values.
    pub fn current_id(&self) -> &str {
        self.current().id.as_str()
    }

    /// Every key id, the current one first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// True when `id` is one of the ring's keys.
    pub fn has_id(&self, id: &str) -> bool {
        self.keys.iter().any(|k| k.id == id)
    }

    fn current(&self) -> &Key {
        // `parse` refuses an empty list, so there is always a first key.
        &self.keys[0]
    }

    /// Encrypts `plaintext` under the current key, bound to `aad` (which
    /// names the row and column it is stored in), as
    /// `enc1:<key-id>:<base64url(nonce || ciphertext)>`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<String, StoreError> {
        let key = self.current();
        let mut nonce = [0u8; NONCE_LEN];
        SysRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| StoreError::Crypto(format!("the OS random generator failed: {e}")))?;
        let ciphertext = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| StoreError::Crypto("cannot encrypt a value".into()))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(format!(
            "{PREFIX}{}:{}",
            key.id,
            URL_SAFE_NO_PAD.encode(&sealed)
        ))
    }

    /// Decrypts a value [`Keyring::seal`] made with the same `aad`. A value
    /// without the `enc1:` prefix was written before encryption existed and
    /// is returned as it is, so an older database stays readable.
    pub fn open(&self, stored: &str, aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.as_bytes().to_vec());
        };
        let (id, body) = rest
            .split_once(':')
            .ok_or_else(|| StoreError::Crypto("a sealed value has no key id".into()))?;
        let key = self.keys.iter().find(|k| k.id == id).ok_or_else(|| {
            StoreError::Crypto(format!(
                "a value is sealed with key id {id}, which is not configured"
            ))
        })?;
        let sealed = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| StoreError::Crypto("a sealed value is not valid base64url".into()))?;
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Crypto("a sealed value is truncated".into()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce)
            .map_err(|_| StoreError::Crypto("a sealed value is truncated".into()))?;
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| {
                StoreError::Crypto(format!(
                    "a value sealed with key id {id} does not authenticate: it was altered, \
                     moved from another row, or the key is wrong"
                ))
            })
    }

    /// The key id of a sealed value, `None` for legacy plaintext.
    pub fn key_id_of(stored: &str) -> Option<&str> {
        let rest = stored.strip_prefix(PREFIX)?;
        rest.split_once(':').map(|(id, _)| id)
    }
}

impl KeyError {
    /// Names the source a parse error came from.
    fn within(self, origin: &str) -> Self {
        Self::Invalid {
            origin: origin.to_owned(),
            source: Box::new(self),
        }
    }
}

/// The id of a key given without one: 8 hex chars of its SHA-256, enough to
/// tell a handful of keys apart and useless for guessing the key.
fn derived_id(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    hex::encode(&digest[..4])
}

/// Key ids go into every sealed value and into logs: short, and only
/// characters that need no quoting (in particular no `:` or `,`).
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("a key id must be 1 to {MAX_ID_LEN} characters"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("a key id may only hold letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}

/// Refuses a key file that group or others can access.
#[cfg(unix)]
fn check_private(path: &Path, file: &std::fs::File) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file
        .metadata()
        .map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _file: &std::fs::File) -> Result<(), KeyError> {
    Ok(())
}

/// Creates `path` (which must not exist) readable by its owner only, writes
/// `bytes` and syncs them to disk.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a new directory entry durable. Best effort: some platforms cannot
/// open a directory, and the file itself is already synced.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f";

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text).expect("valid keys")
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_plaintext() {
        let keys = ring(&format!("a:{KEY_A}"));
        let secret = b"print('very secret code')";
        let sealed = keys.seal(secret, b"jobs.spec:1").expect("seal");
        assert!(sealed.starts_with("enc1:a:"), "{sealed}");
        assert!(!sealed.contains("secret"));
        assert_eq!(keys.open(&sealed, b"jobs.spec:1").expect("open"), secret);
        // A fresh nonce each time: the same plaintext never seals the same.
        assert_ne!(sealed, keys.seal(secret, b"jobs.spec:1").expect("seal"));
        assert_eq!(Keyring::key_id_of(&sealed), Some("a"));
    }

    #[test]
    fn wrong_aad_or_altered_ciphertext_does_not_open() {
        let keys = ring(KEY_A);
        let sealed = keys.seal(b"{\"code\":1}", b"jobs.spec:1").expect("seal");
        let err = keys.open(&sealed, b"jobs.spec:2").expect_err("other row");
        assert!(matches!(err, StoreError::Crypto(_)), "{err}");
        assert!(
            keys.open(&sealed, b"jobs.outcome:1").is_err(),
            "other column"
        );

        // Flip one bit in every position of the decoded body in turn.
        let (head, body) = sealed.rsplit_once(':').expect("body");
        let bytes = URL_SAFE_NO_PAD.decode(body).expect("base64");
        for i in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 1;
            let text = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&tampered));
            assert!(keys.open(&text, b"jobs.spec:1").is_err(), "byte {i}");
        }
        let truncated = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&bytes[..10]));
        assert!(keys.open(&truncated, b"jobs.spec:1").is_err());
        assert!(keys.open("enc1:nokeyid", b"").is_err());
        assert!(keys.open(&format!("{head}:!!"), b"jobs.spec:1").is_err());
    }

    #[test]
    fn unknown_key_ids_are_errors_and_legacy_plaintext_reads_as_is() {
        let old = ring(&format!("old:{KEY_A}"));
        let new = ring(&format!("new:{KEY_B}"));
        let sealed = old.seal(b"x", b"aad").expect("seal");
        let err = new.open(&sealed, b"aad").expect_err("unknown id");
        assert!(err.to_string().contains("old"), "{err}");
        assert_eq!(
            new.open("{\"code\":\"print(1)\"}", b"aad").expect("legacy"),
            b"{\"code\":\"print(1)\"}"
        );
        assert_eq!(Keyring::key_id_of("{}"), None);
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_seals_with_the_first_key() {
        let before = ring(&format!("k1:{KEY_A}"));
        let sealed = before.seal(b"old record", b"jobs.spec:7").expect("seal");
        // Rotate: the new key first, the old one kept (comma form this time).
        let after = ring(&format!("k2:{KEY_B}, k1:{KEY_A}"));
        assert_eq!(after.current_id(), "k2");
        assert_eq!(after.ids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert_eq!(
            after.open(&sealed, b"jobs.spec:7").expect("old opens"),
            b"old record"
        );
        let fresh = after.seal(b"new record", b"jobs.spec:8").expect("seal");
        assert_eq!(Keyring::key_id_of(&fresh), Some("k2"));
        assert!(before.open(&fresh, b"jobs.spec:8").is_err());
    }

    #[test]
    fn key_lists_parse_in_every_documented_form() {
        let bare = ring(KEY_A);
        // Its id is the first 8 hex chars of SHA-256 of the 32 key bytes.
        let bytes = hex::decode(KEY_A).expect("hex");
        assert_eq!(bare.current_id(), &hex::encode(Sha256::digest(&bytes))[..8]);
        let lines = ring(&format!(
            "# comment\n\n  new:{}  \nold:{KEY_A}\n",
            KEY_B.to_uppercase()
        ));
        assert_eq!(lines.ids().collect::<Vec<_>>(), ["new", "old"]);
        assert!(!format!("{lines:?}").contains(&KEY_A[..16]), "Debug leaks");
    }

    #[test]
    fn malformed_key_lists_are_refused() {
        let cases = [
            ("", "no encryption key"),
            ("# only a comment\n", "no encryption key"),
            ("abc", "64 hex"),
            (&format!("{KEY_A}00"), "64 hex"),
            (&KEY_A.replace('0', "g"), "64 hex"),
            (&format!(":{KEY_A}"), "key id"),
            (&format!("a b:{KEY_A}"), "key id"),
            (&format!("{}:{KEY_A}", "x".repeat(33)), "key id"),
            (&format!("a:{KEY_A},a:{KEY_B}"), "twice"),
            (&format!("a:{KEY_A}\nb:zz"), "entry 2"),
        ];
        for (text, want) in cases {
            let err = Keyring::parse(text).expect_err(text);
            let message = err.to_string();
            assert!(message.contains(want), "{text:?}: {message}");
            assert!(!message.contains(&KEY_A[..16]), "error leaks the key");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_generated_key_file_is_private_reused_and_loses_to_env_and_explicit_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let first = Keyring::load_or_create(&data, None, None).expect("generate");
        let path = data.join(KEY_FILE);
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&data).expect("dir").count(), 1);
        let sealed = first.seal(b"x", b"aad").expect("seal");
        let again = Keyring::load_or_create(&data, None, None).expect("reload");
        assert_eq!(again.current_id(), first.current_id());
        assert_eq!(again.open(&sealed, b"aad").expect("open"), b"x");

        // The variable wins over the file, and an empty one is an error.
        let env = Keyring::load_or_create(&data, Some(&format!("e:{KEY_A}")), None).expect("env");
        assert_eq!(env.current_id(), "e");
        let err = Keyring::load_or_create(&data, Some(""), None).expect_err("empty");
        assert!(err.to_string().contains(KEY_ENV), "{err}");

        // An explicit file must exist, and must be private.
        let own = dir.path().join("keys");
        let err = Keyring::load_or_create(&data, None, Some(&own)).expect_err("missing");
        assert!(matches!(err, KeyError::Io { .. }), "{err}");
        std::fs::write(&own, format!("f:{KEY_B}\n")).expect("write");
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Keyring::load_or_create(&data, None, Some(&own)).expect_err("readable");
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        let file = Keyring::load_or_create(&data, None, Some(&own)).expect("file");
        assert_eq!(file.current_id(), "f");

        // The generated file is checked like any other.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(Keyring::load_or_create(&data, None, None).is_err());
    }
}
