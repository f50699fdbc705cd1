//! `kinglet secret keygen|recipient|seal`: the client side of sealed manifests (the daemon
//! opens them, `kinglet_kubelet::sealed`). Nothing here talks to the daemon: sealing needs only
//! the recipient, so a manifest can be sealed on another machine and copied in.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use kinglet_kubelet::sealed;

/// The daemon's identity file unless `age-identity-file` says otherwise.
const DEFAULT_IDENTITY: &str = "/etc/kinglet/age.key";

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create an age identity (0600, root) for the daemon and print its recipient (age1...).
    Keygen {
        /// Where to write it; an existing file is never overwritten.
        #[arg(short = 'o', long, default_value = DEFAULT_IDENTITY)]
        output: PathBuf,
    },
    /// Print the recipient (age1...) of an identity file, to seal for it elsewhere.
    Recipient {
        /// The identity file.
        #[arg(short = 'i', long, default_value = DEFAULT_IDENTITY)]
        identity: PathBuf,
    },
    /// Encrypt a manifest (a Secret, or any manifest) with age for the daemon; write the sealed
    /// file (ASCII armored) to stdout: `kinglet secret seal -f db.yaml > db.sealed.yaml`.
    Seal {
        /// The manifest, or - for stdin.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Seal for this recipient (age1...); may be repeated.
        #[arg(short = 'r', long = "recipient")]
        recipients: Vec<String>,
        /// Seal for each recipient in this file (one per line, # comments).
        #[arg(short = 'R', long = "recipients-file")]
        recipients_file: Option<PathBuf>,
        /// Without --recipient(s-file): seal for the recipient of this identity.
        #[arg(short = 'i', long, default_value = DEFAULT_IDENTITY)]
        identity: PathBuf,
    },
}

pub fn run(cmd: SecretCommand) -> anyhow::Result<()> {
    match cmd {
        SecretCommand::Keygen { output } => keygen(&output),
        SecretCommand::Recipient { identity } => {
            for r in sealed::recipients_of_identity(&identity)? {
                println!("{r}");
            }
            Ok(())
        }
        SecretCommand::Seal {
            file,
            mut recipients,
            recipients_file,
            identity,
        } => {
            if let Some(f) = recipients_file {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("read the recipients file {}", f.display()))?;
                recipients.extend(sealed::recipients_from(&text));
            }
            if recipients.is_empty() {
                recipients = sealed::recipients_of_identity(&identity).with_context(|| {
                    "no --recipient given, and this node's identity gives none".to_owned()
                })?;
            }
            print!("{}", seal_file(&file, &recipients)?);
            Ok(())
        }
    }
}

fn keygen(output: &Path) -> anyhow::Result<()> {
    let (text, public) = sealed::keygen();
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .with_context(|| {
            format!(
                "create {} (an existing identity is never overwritten: its sealed files would \
                 no longer open)",
                output.display()
            )
        })?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    f.sync_all()?;
    eprintln!(
        "kinglet: identity written to {}; seal for its recipient:",
        output.display()
    );
    println!("{public}");
    Ok(())
}

/// Seal one manifest after checking that it parses (a broken manifest would only be found by
/// the daemon, and then by its name alone).
fn seal_file(file: &Path, recipients: &[String]) -> anyhow::Result<String> {
    let mut plain = Vec::new();
    let name = file.display().to_string();
    if file == Path::new("-") {
        std::io::stdin().read_to_end(&mut plain)?;
    } else {
        plain = std::fs::read(file).with_context(|| format!("read {name}"))?;
    }
    if sealed::is_sealed(&plain) {
        bail!("{name} is sealed already");
    }
    let text = String::from_utf8(plain).with_context(|| format!("{name} is not UTF-8 text"))?;
    let (objs, errors) = kinglet_manifest::parse_each(&name, &text);
    if let Some(e) = errors.first() {
        bail!("not sealed: {e}");
    }
    if objs.is_empty() {
        bail!("not sealed: {name} holds no object");
    }
    Ok(sealed::seal(text.as_bytes(), recipients)?)
}

/// A manifest file's text for `kinglet apply -f`: a binary age file is armored (the daemon
/// opens it); plain and armored files are sent as they are.
pub fn manifest_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    if sealed::is_sealed(&bytes) && bytes.starts_with(b"age-encryption.org/v1") {
        return Ok(sealed::armor(&bytes)?);
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}
