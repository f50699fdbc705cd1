//! A small file replaced durably with one `fdatasync`: two slots, each written in place.
//!
//! The image records used to be replaced by writing a temp file, fsyncing it, renaming it over
//! the old one and fsyncing the directory: two journal commits per change, and on a busy file
//! system a journal commit waits for other processes' data too. Here the file holds two
//! fixed-size slots whose blocks were written once when the file was made; a change overwrites
//! the older slot in place and `fdatasync`s it. Overwriting written blocks changes no file
//! system metadata that `fdatasync` must commit (the size and the extents stay), so it is a
//! data flush only — as a database's write-ahead log or bolt's pages are.
//!
//! Each slot is `magic, sequence, length, sha256(sequence, length, payload), payload`. Loading
//! takes the intact slot with the highest sequence; a write torn by a crash fails its checksum
//! and the other slot — the state before that unacknowledged write — is read. A write never
//! touches the slot holding the current state (slot = sequence mod 2). A payload that outgrows
//! a slot makes a new, larger file the slow way (temp file, fsync, rename, directory fsync).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"KNGLSLT1";
/// magic + sequence + length + sha256.
const HEADER: usize = 8 + 8 + 8 + 32;
/// The smallest slot: room for about a hundred image records.
const MIN_SLOT: u64 = 64 * 1024;

/// An open slot file.
#[derive(Debug)]
pub(crate) struct SlotFile {
    path: PathBuf,
    file: File,
    slot_size: u64,
    /// Sequence number of the current (newest intact) slot.
    seq: u64,
}

fn checksum(seq: u64, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seq.to_le_bytes());
    h.update((payload.len() as u64).to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

/// One slot's bytes (header and payload, unpadded).
fn encode(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(seq, payload));
    out.extend_from_slice(payload);
    out
}

/// The sequence and payload of an intact slot.
fn decode(slot: &[u8]) -> Option<(u64, &[u8])> {
    if slot.len() < HEADER || &slot[..8] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(slot[8..16].try_into().ok()?);
    let len = usize::try_from(u64::from_le_bytes(slot[16..24].try_into().ok()?)).ok()?;
    let payload = slot.get(HEADER..HEADER.checked_add(len)?)?;
    (slot[24..HEADER] == checksum(seq, payload)).then_some((seq, payload))
}

/// The slot size for a payload of `len` bytes: a power of two, twice what it needs.
fn slot_size_for(len: usize) -> u64 {
    ((HEADER + len) as u64 * 2)
        .next_power_of_two()
        .max(MIN_SLOT)
}

fn corrupt(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

impl SlotFile {
    /// Open `path`: the file and the newest intact payload; `Ok(None)` when there is no file.
    /// A file without an intact slot is an `InvalidData` error.
    pub(crate) fn open(path: &Path) -> io::Result<Option<(SlotFile, Vec<u8>)>> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = bytes.len() as u64;
        if len < 2 * HEADER as u64 || len % 2 != 0 {
            return Err(corrupt(path, "not a slot file (bad size)"));
        }
        let slot_size = len / 2;
        let (a, b) = bytes.split_at(slot_size as usize);
        let newest = match (decode(a), decode(b)) {
            (Some(x), Some(y)) => Some(if x.0 >= y.0 { x } else { y }),
            (x, y) => x.or(y),
        };
        let Some((seq, payload)) = newest else {
            return Err(corrupt(path, "no intact copy of the records"));
        };
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let payload = payload.to_vec();
        Ok(Some((
            SlotFile {
                path: path.to_owned(),
                file,
                slot_size,
                seq,
            },
            payload,
        )))
    }

    /// Make a new file at `path` holding `payload` (sequence `seq`), replacing any file there:
    /// both slots written in full, fsynced, renamed into place, the directory fsynced.
    pub(crate) fn create(path: &Path, payload: &[u8], seq: u64) -> io::Result<SlotFile> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let slot_size = slot_size_for(payload.len());
        let mut image = vec![0u8; (slot_size * 2) as usize];
        let at = ((seq % 2) * slot_size) as usize;
        let slot = encode(seq, payload);
        image[at..at + slot.len()].copy_from_slice(&slot);
        // ".tmp-" files in the store root are removed at open if a crash leaves one.
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        tmp.write_all(&image)?;
        tmp.as_file().sync_all()?;
        let file = tmp.persist(path).map_err(|e| e.error)?;
        File::open(dir)?.sync_all()?;
        Ok(SlotFile {
            path: path.to_owned(),
            file,
            slot_size,
            seq,
        })
    }

    /// Replace the payload: the older slot overwritten in place and `fdatasync`ed; a new,
    /// larger file when it does not fit.
    pub(crate) fn write(&mut self, payload: &[u8]) -> io::Result<()> {
        let seq = self.seq + 1;
        if (HEADER + payload.len()) as u64 > self.slot_size {
            *self = SlotFile::create(&self.path, payload, seq)?;
            return Ok(());
        }
        self.file
            .write_all_at(&encode(seq, payload), (seq % 2) * self.slot_size)?;
        self.file.sync_data()?;
        self.seq = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Vec<u8> {
        SlotFile::open(path).unwrap().unwrap().1
    }

    #[test]
    fn writes_alternate_slots_and_the_newest_wins() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("records");
        assert!(SlotFile::open(&p).unwrap().is_none());
        let mut f = SlotFile::create(&p, b"one", 1).unwrap();
        assert_eq!(read(&p), b"one");
        f.write(b"two").unwrap();
        assert_eq!(read(&p), b"two");
        f.write(b"three").unwrap();
        assert_eq!(read(&p), b"three");
        let (mut again, payload) = SlotFile::open(&p).unwrap().unwrap();
        assert_eq!((payload.as_slice(), again.seq), (&b"three"[..], 3));
        again.write(b"four").unwrap();
        assert_eq!(read(&p), b"four");
        assert_eq!(
            fs::metadata(&p).unwrap().len(),
            2 * MIN_SLOT,
            "written in place"
        );
    }

    #[test]
    fn a_torn_write_leaves_the_previous_records() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("records");
        let mut f = SlotFile::create(&p, b"before", 1).unwrap();
        f.write(b"current").unwrap(); // seq 2, slot 0
                                      // A crash in the middle of writing seq 3 into slot 1: a header but half a payload.
        let torn = encode(3, b"the next records");
        f.file.write_all_at(&torn[..HEADER + 4], MIN_SLOT).unwrap();
        assert_eq!(read(&p), b"current");
        // And a write torn inside the header.
        f.file.write_all_at(&torn[..10], MIN_SLOT).unwrap();
        assert_eq!(read(&p), b"current");
    }

    #[test]
    fn a_payload_larger_than_a_slot_makes_a_larger_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("records");
        let mut f = SlotFile::create(&p, b"small", 1).unwrap();
        let big = vec![b'x'; MIN_SLOT as usize];
        f.write(&big).unwrap();
        assert_eq!(read(&p), big);
        assert!(fs::metadata(&p).unwrap().len() > 2 * MIN_SLOT);
        f.write(b"small again").unwrap();
        assert_eq!(read(&p), b"small again");
    }

    #[test]
    fn a_file_without_an_intact_slot_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("records");
        fs::write(&p, vec![0u8; 2 * MIN_SLOT as usize]).unwrap();
        let e = SlotFile::open(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("no intact copy"), "{e}");
        fs::write(&p, b"{ not a slot file").unwrap();
        assert!(SlotFile::open(&p)
            .unwrap_err()
            .to_string()
            .contains("bad size"));
    }
}
