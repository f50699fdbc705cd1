//! Sealed (age-encrypted) manifests: `kinglet secret seal` writes them, the manifests
//! directory and `kinglet apply` take them. A sealed manifest is a whole manifest file
//! encrypted with age (<https://age-encryption.org>) to one or more X25519 recipients, ASCII
//! armored (`-----BEGIN AGE ENCRYPTED FILE-----`) or binary (`age-encryption.org/v1`). The
//! daemon opens it with its identities — the key file (`age-identity-file`, default
//! `/etc/kinglet/age.key`, which must be root's and readable by no one else) and the systemd
//! credential `age.key` when `$CREDENTIALS_DIRECTORY` holds one — in memory only: the plain
//! text is parsed and dropped, and the Secrets it defines go where every Secret goes (the
//! daemon's tmpfs). Identities are read when a sealed file is opened, so a rotated key is used
//! at the next change without a restart.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use age::armor::{ArmoredReader, ArmoredWriter, Format};

/// The name of the systemd credential holding the daemon's age identity.
pub const CREDENTIAL_IDENTITY: &str = "age.key";

/// Where the daemon finds its age identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    /// The identity file (`age-identity-file`); it may be absent.
    pub identity_file: PathBuf,
    /// `$CREDENTIALS_DIRECTORY` of the daemon's systemd unit, when set.
    pub credentials_dir: Option<PathBuf>,
}

/// What went wrong sealing or opening a manifest. Messages name the file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "{file}: sealed, but no age identity is available (neither {identity} nor the systemd \
         credential `{CREDENTIAL_IDENTITY}` exists); create one with `kinglet secret keygen` and \
         seal for its recipient"
    )]
    NoIdentity { file: String, identity: String },
    #[error("age identity {path}: {why}; fix: chown root:root {path} && chmod 0600 {path}")]
    UntrustedKey { path: String, why: String },
    #[error("age identity {path} unreadable")]
    KeyUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("age identity {path} holds no usable key ({reason})")]
    BadKey { path: String, reason: String },
    #[error(
        "{file}: cannot decrypt with this node's age identity ({tried}): it was sealed for \
         another recipient; seal it again with `kinglet secret seal --recipient $(kinglet secret \
         recipient)`"
    )]
    WrongKey { file: String, tried: String },
    #[error("{file}: not a valid age file ({reason})")]
    Corrupt { file: String, reason: String },
    #[error("{file}: the decrypted manifest is not UTF-8 text")]
    NotText { file: String },
    #[error("recipient {value:?} is not an age X25519 recipient (age1...): {reason}")]
    BadRecipient { value: String, reason: String },
    #[error("no recipient given: pass --recipient age1... or --recipients-file FILE")]
    NoRecipient,
    #[error("encrypting")]
    Encrypt(#[source] age::EncryptError),
    #[error("writing the sealed output")]
    Io(#[source] std::io::Error),
}

/// `bytes` without leading whitespace (an editor's or a heredoc's blank line before the armor).
fn trim_start(bytes: &[u8]) -> &[u8] {
    bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&[][..], |i| &bytes[i..])
}

/// Whether `bytes` is an age file (armored or binary), not a plain manifest.
pub fn is_sealed(bytes: &[u8]) -> bool {
    let start = trim_start(bytes);
    start.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
        || start.starts_with(b"age-encryption.org/v1\n")
}

/// Encrypt a manifest to `recipients` (age1...), ASCII armored.
pub fn seal(plain: &[u8], recipients: &[String]) -> Result<String, SealError> {
    let parsed = recipients
        .iter()
        .map(|r| {
            r.trim()
                .parse::<age::x25519::Recipient>()
                .map_err(|reason| SealError::BadRecipient {
                    value: r.clone(),
                    reason: reason.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.is_empty() {
        return Err(SealError::NoRecipient);
    }
    let enc = age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
        .map_err(SealError::Encrypt)?;
    let mut out = Vec::new();
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(SealError::Io)?;
    let mut w = enc.wrap_output(armor).map_err(SealError::Io)?;
    w.write_all(plain).map_err(SealError::Io)?;
    w.finish().and_then(|a| a.finish()).map_err(SealError::Io)?;
    Ok(String::from_utf8(out).expect("armored output is ASCII"))
}

/// A binary age file, ASCII armored (the same ciphertext), to travel as text.
pub fn armor(binary: &[u8]) -> Result<String, SealError> {
    let mut out = Vec::new();
    let mut w = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(SealError::Io)?;
    w.write_all(binary).map_err(SealError::Io)?;
    w.finish().map_err(SealError::Io)?;
    Ok(String::from_utf8(out).expect("armored output is ASCII"))
}

/// Recipients from a recipients file: one `age1...` per line, `#` comments and blank lines
/// skipped (age's format for X25519 recipients).
pub fn recipients_from(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// A new identity: the key file's text (with its public key as a comment, as age-keygen
/// writes it) and the recipient to seal for.
pub fn keygen() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let text = format!(
        "# created by kinglet secret keygen\n# public key: {public}\n{}\n",
        id.to_string().expose_secret()
    );
    (text, public)
}

/// The recipients of the identities in a key file's text (`kinglet secret recipient`).
pub fn recipients_of_identity(path: &Path) -> Result<Vec<String>, SealError> {
    let text = read_key(path)?;
    let ids = parse_x25519(path, &text)?;
    Ok(ids.iter().map(|i| i.to_public().to_string()).collect())
}

fn parse_x25519(path: &Path, text: &str) -> Result<Vec<age::x25519::Identity>, SealError> {
    let ids = recipients_from(text)
        .iter()
        .map(|l| {
            l.parse::<age::x25519::Identity>()
                .map_err(|reason| SealError::BadKey {
                    path: path.display().to_string(),
                    reason: reason.to_owned(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(SealError::BadKey {
            path: path.display().to_string(),
            reason: "no AGE-SECRET-KEY-1... line".into(),
        });
    }
    Ok(ids)
}

/// Read a key file, refusing one another user owns or could read or write.
fn read_key(path: &Path) -> Result<String, SealError> {
    let shown = path.display().to_string();
    let m = std::fs::metadata(path).map_err(|source| SealError::KeyUnreadable {
        path: shown.clone(),
        source,
    })?;
    if let Some(why) = key_mode_problem(m.uid(), m.mode()) {
        return Err(SealError::UntrustedKey { path: shown, why });
    }
    std::fs::read_to_string(path).map_err(|source| SealError::KeyUnreadable {
        path: shown,
        source,
    })
}

/// Why a key file with this owner and mode could be read or changed by others.
pub fn key_mode_problem(uid: u32, mode: u32) -> Option<String> {
    if uid != 0 {
        return Some(format!("owned by uid {uid}, not root"));
    }
    let mode = mode & 0o7777;
    (mode & 0o077 != 0).then(|| format!("group or others have access ({mode:04o})"))
}

impl Keys {
    /// The key files that exist, credential first.
    fn files(&self) -> Vec<PathBuf> {
        let cred = self
            .credentials_dir
            .as_ref()
            .map(|d| d.join(CREDENTIAL_IDENTITY));
        cred.into_iter()
            .chain(std::iter::once(self.identity_file.clone()))
            .filter(|p| p.exists())
            .collect()
    }

    /// Decrypt a sealed manifest in memory. `file` names it in errors.
    pub fn open(&self, file: &str, bytes: &[u8]) -> Result<String, SealError> {
        let files = self.files();
        if files.is_empty() {
            return Err(SealError::NoIdentity {
                file: file.to_owned(),
                identity: self.identity_file.display().to_string(),
            });
        }
        let mut ids = Vec::new();
        for p in &files {
            ids.extend(parse_x25519(p, &read_key(p)?)?);
        }
        let corrupt = |reason: String| SealError::Corrupt {
            file: file.to_owned(),
            reason,
        };
        let dec = age::Decryptor::new_buffered(ArmoredReader::new(trim_start(bytes)))
            .map_err(|e| corrupt(e.to_string()))?;
        let mut reader = match dec.decrypt(ids.iter().map(|i| i as &dyn age::Identity)) {
            Ok(r) => r,
            Err(age::DecryptError::NoMatchingKeys) => {
                let tried = files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(SealError::WrongKey {
                    file: file.to_owned(),
                    tried,
                });
            }
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let mut plain = Vec::new();
        reader
            .read_to_end(&mut plain)
            .map_err(|e| corrupt(e.to_string()))?;
        String::from_utf8(plain).map_err(|_| SealError::NotText {
            file: file.to_owned(),
        })
    }

    /// A manifest file's text: opened when sealed, else as it is.
    pub fn text_of(&self, file: &str, bytes: Vec<u8>) -> Result<(String, bool), SealError> {
        if is_sealed(&bytes) {
            return self.open(file, &bytes).map(|t| (t, true));
        }
        String::from_utf8(bytes)
            .map(|t| (t, false))
            .map_err(|_| SealError::NotText {
                file: file.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const SECRET: &str =
        "kind: Secret\napiVersion: v1\nmetadata: {name: db}\nstringData: {password: hunter2}\n";

    fn key_in(dir: &Path, name: &str) -> (Keys, String) {
        let (text, public) = keygen();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        (
            Keys {
                identity_file: p,
                credentials_dir: None,
            },
            public,
        )
    }

    #[test]
    fn sealed_text_opens_with_its_key_only_and_holds_no_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, public) = key_in(dir.path(), "age.key");
        let sealed = seal(SECRET.as_bytes(), &[public]).unwrap();
        assert!(is_sealed(sealed.as_bytes()));
        assert!(!is_sealed(SECRET.as_bytes()));
        assert!(!sealed.contains("hunter2") && !sealed.contains("Secret"));
        assert_eq!(keys.open("s.yaml", sealed.as_bytes()).unwrap(), SECRET);
        let padded = format!("\n  {sealed}");
        assert_eq!(keys.open("s.yaml", padded.as_bytes()).unwrap(), SECRET);
        // The binary form (`age` without -a) opens too, and armors back to text.
        let mut binary = Vec::new();
        ArmoredReader::new(sealed.as_bytes())
            .read_to_end(&mut binary)
            .unwrap();
        assert!(binary.starts_with(b"age-encryption.org/v1\n") && is_sealed(&binary));
        assert_eq!(keys.open("s.age", &binary).unwrap(), SECRET);
        assert_eq!(
            keys.open("s.age", armor(&binary).unwrap().as_bytes())
                .unwrap(),
            SECRET
        );
        assert_eq!(
            keys.text_of("p.yaml", SECRET.as_bytes().to_vec()).unwrap(),
            (SECRET.to_owned(), false)
        );

        let (other, _) = key_in(dir.path(), "other.key");
        let e = other.open("s.yaml", sealed.as_bytes()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, SealError::WrongKey { .. }), "{msg}");
        assert!(msg.starts_with("s.yaml: cannot decrypt"), "{msg}");
        assert!(msg.contains("other.key"), "{msg}");
    }

    #[test]
    fn the_credential_identity_is_used_besides_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cred, public) = key_in(dir.path(), CREDENTIAL_IDENTITY);
        let keys = Keys {
            identity_file: dir.path().join("absent.key"),
            credentials_dir: Some(dir.path().to_owned()),
        };
        assert_eq!(cred.identity_file, dir.path().join(CREDENTIAL_IDENTITY));
        let sealed = seal(SECRET.as_bytes(), &[public]).unwrap();
        assert_eq!(keys.open("s.yaml", sealed.as_bytes()).unwrap(), SECRET);
        let none = Keys {
            identity_file: dir.path().join("absent.key"),
            credentials_dir: None,
        };
        let msg = none
            .open("s.yaml", sealed.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("no age identity") && msg.contains("absent.key"),
            "{msg}"
        );
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        assert_eq!(key_mode_problem(0, 0o100600), None);
        assert_eq!(key_mode_problem(0, 0o100400), None);
        assert!(key_mode_problem(0, 0o100640).unwrap().contains("0640"));
        assert!(key_mode_problem(1000, 0o100600)
            .unwrap()
            .contains("uid 1000"));
        let dir = tempfile::tempdir().unwrap();
        let (keys, public) = key_in(dir.path(), "age.key");
        std::fs::set_permissions(&keys.identity_file, std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let sealed = seal(SECRET.as_bytes(), &[public]).unwrap();
        let msg = keys
            .open("s.yaml", sealed.as_bytes())
            .unwrap_err()
            .to_string();
        if nix::unistd::geteuid().is_root() {
            assert!(
                msg.contains("(0644)") && msg.contains("chmod 0600"),
                "{msg}"
            );
        } else {
            assert!(msg.contains("not root"), "{msg}");
        }
    }

    #[test]
    fn bad_recipients_and_corrupt_files_say_what_is_wrong() {
        let msg = seal(b"x", &["ssh-rsa AAAA".into()])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"ssh-rsa AAAA\""), "{msg}");
        assert!(matches!(seal(b"x", &[]), Err(SealError::NoRecipient)));
        assert_eq!(
            recipients_from("# c\n\nage1abc\n  age1def  \n"),
            vec!["age1abc", "age1def"]
        );
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = key_in(dir.path(), "age.key");
        let bad =
            "-----BEGIN AGE ENCRYPTED FILE-----\nnot base64!\n-----END AGE ENCRYPTED FILE-----\n";
        let msg = keys.open("c.yaml", bad.as_bytes()).unwrap_err().to_string();
        assert!(msg.starts_with("c.yaml: not a valid age file"), "{msg}");
    }
}
