//! Services' logs on disk: `<dir>/<name>.log`, and the rotated files
//! `<name>.log.1` (the newest) … `<name>.log.<keep-1>` (the oldest).
//!
//! What lives here:
//! - [`RotatingLog`]: the daemon's writer for one service. It appends raw
//!   bytes (the service's stdout and stderr as they come, interleaved, and
//!   the daemon's own `--- sc: … ---` marker lines) and rotates by size, at
//!   a line boundary when one fits;
//! - [`tail_lines`]: the last lines across the current and rotated files,
//!   read backwards in blocks;
//! - [`LogFollower`]: `sc logs -f`, polling the file and following it across
//!   rotations without losing bytes; [`tail_and_follow`] joins the two with
//!   no gap and no overlap.
//!
//! What it must not do: change the bytes (no prefixes, no timestamps, no
//! UTF-8 assumption; only [`RotatingLog::write_marker`] adds a newline, to
//! put its marker on a line of its own); hold bytes in memory (a `write` is
//! in the file when it returns, for followers and across a daemon crash);
//! lose bytes at rotation; know about services, processes or the protocol
//! (the caller chooses the directory, the name and what to write).
//!
//! [`RotatingLog`] and [`tail_lines`] do blocking file I/O: call them from a
//! blocking context (`spawn_blocking` or a dedicated thread). The follower's
//! reads are inline but short (one `pread` of at most [`MAX_CHUNK`] bytes
//! and a few `stat`s per poll).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `tail_lines` reads backwards in blocks of this size.
const BLOCK: u64 = 64 * 1024;

/// The most [`LogFollower::next_chunk`] returns at once.
pub const MAX_CHUNK: usize = 256 * 1024;

/// How often [`LogFollower::next_chunk`] looks at the file.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Rotated files are looked for up to this index (far above any sane `keep`).
const MAX_INDEX: usize = 100_000;

/// `<dir>/<name>.log`, the file being written.
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// `<dir>/<name>.log.<k>`; `k = 0` is the current file.
fn chain_path(dir: &Path, name: &str, k: usize) -> PathBuf {
    if k == 0 {
        log_path(dir, name)
    } else {
        dir.join(format!("{name}.log.{k}"))
    }
}

/// The name must stay a single file name inside the directory.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid log name {name:?}"),
        ));
    }
    Ok(())
}

/// The same error, with what was being done and to which path.
fn at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Identifies a file across renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The identity of the file at `path`, `None` if there is none.
fn stat_id(path: &Path) -> io::Result<Option<FileId>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(FileId::of(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(at("inspecting", path)(e)),
    }
}

/// Open `path` for reading: the handle, its length now and its identity;
/// `None` if there is no such file.
fn open_snapshot(path: &Path) -> io::Result<Option<(File, u64, FileId)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(at("opening", path)(e)),
    };
    let meta = file.metadata().map_err(at("inspecting", path))?;
    Ok(Some((file, meta.len(), FileId::of(&meta))))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(at("removing", path)(e)),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("renaming {} to {}: {e}", from.display(), to.display()),
        )),
    }
}

/// The identities at `<name>.log`, `<name>.log.1`, …: index `k` is
/// `<name>.log.k`. Stops after two missing indices in a row (a rotation in
/// progress leaves at most one gap); trailing gaps are dropped.
fn chain_ids(dir: &Path, name: &str) -> io::Result<Vec<Option<FileId>>> {
    let mut ids = vec![stat_id(&chain_path(dir, name, 0))?];
    let mut misses = 0;
    let mut k = 1;
    while misses < 2 && k <= MAX_INDEX {
        let id = stat_id(&chain_path(dir, name, k))?;
        misses = if id.is_some() { 0 } else { misses + 1 };
        ids.push(id);
        k += 1;
    }
    while ids.len() > 1 && ids.last() == Some(&None) {
        ids.pop();
    }
    Ok(ids)
}

/// An append-only, size-rotated log file for one service.
///
/// Bytes go straight to the file (no buffering). When a write would take
/// `<name>.log` past `max_bytes`, the part up to the last newline that fits
/// is written, the files are shifted (`<name>.log.k` → `<name>.log.k+1`,
/// `<name>.log` → `<name>.log.1`, the oldest dropped so that at most `keep`
/// files exist) and the rest goes to a fresh `<name>.log`. A line longer
/// than `max_bytes` is split. With `keep = 1` the old file is removed and a
/// fresh one started.
///
/// Rotation renames and never copies or truncates, so a [`LogFollower`]
/// holding the old file reads its end through its handle.
#[derive(Debug)]
pub struct RotatingLog {
    dir: PathBuf,
    name: String,
    path: PathBuf,
    /// `None` after a failed rotation: the next write reopens the path.
    file: Option<File>,
    /// The size of the file at `path`, as written by us.
    size: u64,
    max_bytes: u64,
    keep: u32,
    /// The last byte written was a newline (or nothing was written yet).
    at_line_start: bool,
}

impl RotatingLog {
    /// Open `<dir>/<name>.log` for appending (creating `dir` and the file if
    /// needed) and remove rotated files beyond `keep`. An existing file is
    /// appended to; its size counts toward `max_bytes`.
    ///
    /// `max_bytes` and `keep` must be at least 1 and `name` a plain file
    /// name, else `InvalidInput`.
    pub fn open(
        dir: impl AsRef<Path>,
        name: &str,
        max_bytes: u64,
        keep: u32,
    ) -> io::Result<RotatingLog> {
        check_name(name)?;
        if max_bytes == 0 || keep == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("log {name}: max_bytes ({max_bytes}) and keep ({keep}) must be at least 1"),
            ));
        }
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(at("creating log directory", &dir))?;
        let path = log_path(&dir, name);
        let (file, size) = open_append(&path)?;
        let at_line_start = if size == 0 {
            true
        } else {
            let mut last = [0u8];
            file.read_exact_at(&mut last, size - 1)
                .map_err(at("reading", &path))?;
            last[0] == b'\n'
        };
        let log = RotatingLog {
            name: name.to_owned(),
            dir,
            path,
            file: Some(file),
            size,
            max_bytes,
            keep,
            at_line_start,
        };
        log.drop_beyond_keep()?;
        Ok(log)
    }

    #[cfg(test)]
    /// `<dir>/<name>.log`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `bytes`, rotating as needed; none are lost or reordered. On an
    /// error, what was written before it stays written.
    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let room = self.max_bytes.saturating_sub(self.size);
            let take = if bytes.len() as u64 <= room {
                bytes.len()
            } else {
                // room < bytes.len(), so it fits a usize.
                let room = room as usize;
                match bytes[..room].iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    // A fresh file and no line end that fits: split the line.
                    None if self.size == 0 => room,
                    // Start the line in the next file.
                    None => 0,
                }
            };
            if take > 0 {
                self.append(&bytes[..take])?;
                bytes = &bytes[take..];
            }
            if !bytes.is_empty() {
                self.rotate()?;
            }
        }
        Ok(())
    }

    /// Write the daemon's marker line `--- sc: <text> ---`, on a line of its
    /// own: a newline goes first if the output so far ends mid-line.
    pub fn write_marker(&mut self, text: &str) -> io::Result<()> {
        let mut line = Vec::with_capacity(text.len() + 14);
        if !self.at_line_start {
            line.push(b'\n');
        }
        line.extend_from_slice(b"--- sc: ");
        line.extend_from_slice(text.as_bytes());
        line.extend_from_slice(b" ---\n");
        self.write(&line)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            let (file, size) = open_append(&self.path)?;
            self.file = Some(file);
            self.size = size;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("log file not open"));
        };
        match file.write_all(bytes) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                self.at_line_start = bytes.last() == Some(&b'\n');
                Ok(())
            }
            Err(e) => {
                // Part may have been written: take the size from the file.
                if let Ok(meta) = file.metadata() {
                    self.size = meta.len();
                }
                Err(at("writing", &self.path)(e))
            }
        }
    }

    /// Shift the files and start a fresh `<name>.log`.
    fn rotate(&mut self) -> io::Result<()> {
        // If this fails half-way, the next write reopens whatever is at the
        // path (with its real size) and tries again.
        self.file = None;
        if self.keep == 1 {
            remove_if_exists(&self.path)?;
        } else {
            let keep = self.keep as usize;
            // The rotated files run from `.1` up to the first missing index;
            // shifting stops there (a gap left by a failed rotation absorbs
            // the shift, and nothing is overwritten).
            let mut top = 0;
            while top + 1 < keep {
                let next = chain_path(&self.dir, &self.name, top + 1);
                if !next.try_exists().map_err(at("inspecting", &next))? {
                    break;
                }
                top += 1;
            }
            if top == keep - 1 {
                remove_if_exists(&chain_path(&self.dir, &self.name, top))?;
                top -= 1;
            }
            for k in (1..=top).rev() {
                rename_if_exists(
                    &chain_path(&self.dir, &self.name, k),
                    &chain_path(&self.dir, &self.name, k + 1),
                )?;
            }
            rename_if_exists(&self.path, &chain_path(&self.dir, &self.name, 1))?;
        }
        let (file, size) = open_append(&self.path)?;
        self.file = Some(file);
        self.size = size;
        Ok(())
    }

    /// Remove `<name>.log.k` for k ≥ keep (left by a larger `keep`).
    fn drop_beyond_keep(&self) -> io::Result<()> {
        let mut k = self.keep as usize;
        while k <= MAX_INDEX {
            let path = chain_path(&self.dir, &self.name, k);
            match fs::remove_file(&path) {
                Ok(()) => k += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(at("removing", &path)(e)),
            }
        }
        Ok(())
    }
}

/// Open (creating) `path` for appending; the handle and the file's size.
fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(at("opening", path))?;
    let size = file.metadata().map_err(at("inspecting", path))?.len();
    Ok((file, size))
}

/// The last `n` lines of the log, across `<name>.log` and as many rotated
/// files as needed, oldest first. A final line without a newline counts as
/// a line. Missing files (or no log at all) give what there is, possibly
/// nothing. Files are read backwards in blocks, so the cost is that of the
/// output, not of the files.
pub fn tail_lines(dir: impl AsRef<Path>, name: &str, n: usize) -> io::Result<Vec<u8>> {
    check_name(name)?;
    let dir = dir.as_ref();
    let live = open_snapshot(&log_path(dir, name))?;
    tail_from(
        dir,
        name,
        live.as_ref().map(|(f, len, id)| (f, *len, *id)),
        n,
    )
}

/// The tail of `n` lines, taking the current file as `live` (its handle,
/// the length to read up to and its identity) and the rotated files from
/// `dir`.
fn tail_from(
    dir: &Path,
    name: &str,
    live: Option<(&File, u64, FileId)>,
    n: usize,
) -> io::Result<Vec<u8>> {
    // Pieces of the output, newest first; each is contiguous.
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut remaining = n;
    // The next byte looked at is the last byte of the log: a newline there
    // ends the last line rather than starting another.
    let mut last_byte = true;
    let mut seen: Vec<FileId> = Vec::new();
    let mut misses = 0;
    let mut k = 0;
    'files: while misses < 2 && k <= MAX_INDEX {
        let path = chain_path(dir, name, k);
        let opened;
        let (file, len, id) = if k == 0 {
            match live {
                Some(l) => l,
                None => {
                    k += 1;
                    continue;
                }
            }
        } else {
            opened = open_snapshot(&path)?;
            match &opened {
                Some((f, len, id)) => (f, *len, *id),
                None => {
                    misses += 1;
                    k += 1;
                    continue;
                }
            }
        };
        k += 1;
        misses = 0;
        // A rotation while we look may show the same file twice.
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let mut end = len;
        while end > 0 {
            let start = end.saturating_sub(BLOCK);
            let mut block = vec![0u8; (end - start) as usize];
            file.read_exact_at(&mut block, start)
                .map_err(at("reading", &path))?;
            let mut upto = block.len();
            if last_byte {
                last_byte = false;
                if block.last() == Some(&b'\n') {
                    upto -= 1;
                }
            }
            while let Some(i) = block[..upto].iter().rposition(|&b| b == b'\n') {
                remaining -= 1;
                if remaining == 0 {
                    block.drain(..=i);
                    pieces.push(block);
                    break 'files;
                }
                upto = i;
            }
            pieces.push(block);
            end = start;
        }
    }
    let mut out = Vec::with_capacity(pieces.iter().map(Vec::len).sum());
    for piece in pieces.iter().rev() {
        out.extend_from_slice(piece);
    }
    Ok(out)
}

/// Follows `<dir>/<name>.log` as it grows and across rotations.
///
/// Every poll reads what is new through the open handle. When the path names
/// another file (or none), the old file was rotated away: its remaining
/// bytes are read first, then the follower moves to the file written after
/// it (found by where the old file now sits among `<name>.log.k`, so it is
/// not skipped even if several rotations happened between polls, as long as
/// it was not dropped), from its start. A file truncated in place is read
/// again from its start.
#[derive(Debug)]
pub struct LogFollower {
    dir: PathBuf,
    name: String,
    path: PathBuf,
    /// `None` until the file exists.
    cur: Option<Current>,
    poll: Duration,
}

#[derive(Debug)]
struct Current {
    file: File,
    id: FileId,
    /// Everything before this was returned.
    pos: u64,
}

impl LogFollower {
    #[cfg(test)]
    /// A follower positioned at the current end of `<dir>/<name>.log`; if
    /// there is no such file yet, it will return the file from its start
    /// once it appears.
    pub fn new(dir: impl AsRef<Path>, name: &str) -> io::Result<LogFollower> {
        check_name(name)?;
        let dir = dir.as_ref().to_path_buf();
        let path = log_path(&dir, name);
        let cur = open_snapshot(&path)?.map(|(file, len, id)| Current { file, id, pos: len });
        Ok(LogFollower {
            name: name.to_owned(),
            dir,
            path,
            cur,
            poll: POLL_INTERVAL,
        })
    }

    #[cfg(test)]
    /// Poll every `interval` instead of [`POLL_INTERVAL`].
    pub fn set_poll_interval(&mut self, interval: Duration) {
        self.poll = interval;
    }

    /// Wait for new bytes and return them (never empty, at most
    /// [`MAX_CHUNK`]). Waits forever if nothing is written; the caller
    /// bounds it (a timeout, or `select!` with the client going away).
    pub async fn next_chunk(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(chunk) = self.poll_once()? {
                return Ok(chunk);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// One look without waiting: the new bytes, if any.
    fn poll_once(&mut self) -> io::Result<Option<Vec<u8>>> {
        // Each turn either returns or moves on to a newer file; a few turns
        // cover several rotations at once.
        for _ in 0..64 {
            let Some(cur) = self.cur.as_mut() else {
                match open_snapshot(&self.path)? {
                    Some((file, _, id)) => {
                        self.cur = Some(Current { file, id, pos: 0 });
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            let chunk = read_new(cur, &self.path)?;
            if !chunk.is_empty() {
                return Ok(Some(chunk));
            }
            let len = cur
                .file
                .metadata()
                .map_err(at("inspecting", &self.path))?
                .len();
            if len < cur.pos {
                // Truncated in place (not by us): start again from the top.
                cur.pos = 0;
                continue;
            }
            if stat_id(&self.path)? == Some(cur.id) {
                return Ok(None);
            }
            // Rotated away (or removed). Find the next file, then read what
            // was added to the old one meanwhile before moving on.
            let Some((file, id)) = successor(&self.dir, &self.name, cur.id)? else {
                return Ok(None);
            };
            let chunk = read_new(cur, &self.path)?;
            if !chunk.is_empty() {
                return Ok(Some(chunk));
            }
            self.cur = Some(Current { file, id, pos: 0 });
        }
        Ok(None)
    }
}

/// Read what follows `cur.pos`, up to [`MAX_CHUNK`] bytes.
fn read_new(cur: &mut Current, path: &Path) -> io::Result<Vec<u8>> {
    let len = cur.file.metadata().map_err(at("inspecting", path))?.len();
    if len <= cur.pos {
        return Ok(Vec::new());
    }
    let want = (len - cur.pos).min(MAX_CHUNK as u64) as usize;
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match cur.file.read_at(&mut buf[got..], cur.pos + got as u64) {
            Ok(0) => break,
            Ok(r) => got += r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(at("reading", path)(e)),
        }
    }
    buf.truncate(got);
    cur.pos += got as u64;
    Ok(buf)
}

/// The file written after the one identified by `old`, opened: the one just
/// below it among `<name>.log.k`, or, if `old` is no longer there (dropped,
/// or removed with `keep = 1`), the oldest there is. `None` while a rotation
/// is under way or there is no file yet: try again at the next poll.
fn successor(dir: &Path, name: &str, old: FileId) -> io::Result<Option<(File, FileId)>> {
    for _ in 0..4 {
        let before = chain_ids(dir, name)?;
        let idx = match before.iter().position(|id| *id == Some(old)) {
            Some(0) => return Ok(None),
            Some(j) => j - 1,
            None => match before.iter().rposition(Option::is_some) {
                Some(j) => j,
                None => return Ok(None),
            },
        };
        let Some(expected) = before[idx] else {
            continue;
        };
        let path = chain_path(dir, name, idx);
        let Some((file, _, id)) = open_snapshot(&path)? else {
            continue;
        };
        // Unchanged names before and after opening: no rotation in between,
        // so the handle is the file we chose.
        if id == expected && chain_ids(dir, name)? == before {
            return Ok(Some((file, id)));
        }
    }
    Ok(None)
}

/// The last `n` lines, and a follower positioned exactly where they end: no
/// byte is both in the tail and returned by the follower, and none written
/// in between is missed.
pub fn tail_and_follow(
    dir: impl AsRef<Path>,
    name: &str,
    n: usize,
) -> io::Result<(Vec<u8>, LogFollower)> {
    check_name(name)?;
    let dir = dir.as_ref().to_path_buf();
    let path = log_path(&dir, name);
    let live = open_snapshot(&path)?;
    let tail = tail_from(
        &dir,
        name,
        live.as_ref().map(|(f, len, id)| (f, *len, *id)),
        n,
    )?;
    let cur = live.map(|(file, len, id)| Current { file, id, pos: len });
    let follower = LogFollower {
        name: name.to_owned(),
        dir,
        path,
        cur,
        poll: POLL_INTERVAL,
    };
    Ok((tail, follower))
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
