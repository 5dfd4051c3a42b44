//! Tests for the service log files: rotation, tail and follow.

use super::*;
use std::time::Duration;

fn read(path: &Path) -> io::Result<Vec<u8>> {
    fs::read(path)
}

fn rotated(dir: &Path, name: &str, k: usize) -> PathBuf {
    chain_path(dir, name, k)
}

/// Every file of the chain, oldest first, concatenated.
fn concat_all(dir: &Path, name: &str) -> io::Result<Vec<u8>> {
    let mut files = Vec::new();
    let mut k = 1;
    while rotated(dir, name, k).exists() {
        files.push(rotated(dir, name, k));
        k += 1;
    }
    files.reverse();
    files.push(log_path(dir, name));
    let mut out = Vec::new();
    for f in files {
        out.extend(read(&f)?);
    }
    Ok(out)
}

/// How many `<name>.log*` files are in `dir`.
fn count_files(dir: &Path, name: &str) -> io::Result<usize> {
    let prefix = format!("{name}.log");
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        if entry?.file_name().to_string_lossy().starts_with(&prefix) {
            n += 1;
        }
    }
    Ok(n)
}

fn numbered(range: std::ops::Range<usize>) -> Vec<u8> {
    range
        .flat_map(|i| format!("line {i:04}\n").into_bytes())
        .collect()
}

/// A deterministic pseudo-random sequence (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound
    }
}

#[test]
fn rotation_keeps_exactly_keep_files_newest_in_log() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "web", 100, 3)?;
    assert_eq!(log.path(), dir.join("web.log"));
    for i in 0..1000 {
        log.write(format!("line {i:04}\n").as_bytes())?;
    }
    assert_eq!(count_files(dir, "web")?, 3);
    assert!(!rotated(dir, "web", 3).exists());
    // 10-byte lines, 100-byte files: 10 lines each, split at line ends.
    assert_eq!(read(&dir.join("web.log"))?, numbered(990..1000));
    assert_eq!(read(&rotated(dir, "web", 1))?, numbered(980..990));
    assert_eq!(read(&rotated(dir, "web", 2))?, numbered(970..980));
    Ok(())
}

#[test]
fn no_bytes_lost_across_rotations() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let expected = numbered(0..1000);
    let max = 64;
    let mut log = RotatingLog::open(dir, "svc", max, 10_000)?;
    // Chunks of random sizes, cutting lines anywhere.
    let mut rng = Lcg(7);
    let mut rest = &expected[..];
    while !rest.is_empty() {
        let take = (1 + rng.next(40)).min(rest.len());
        log.write(&rest[..take])?;
        rest = &rest[take..];
    }
    assert_eq!(concat_all(dir, "svc")?, expected);
    let mut k = 1;
    while rotated(dir, "svc", k).exists() {
        let bytes = read(&rotated(dir, "svc", k))?;
        assert!(
            bytes.len() as u64 <= max,
            "file {k} has {} bytes",
            bytes.len()
        );
        k += 1;
    }
    assert!(k > 100, "only {k} rotations");
    Ok(())
}

#[test]
fn whole_lines_in_uneven_chunks_rotate_at_line_ends() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let max = 64;
    let mut log = RotatingLog::open(dir, "svc", max, 10_000)?;
    let mut rng = Lcg(11);
    let mut i = 0;
    while i < 1000 {
        let n = (1 + rng.next(12)).min(1000 - i);
        log.write(&numbered(i..i + n))?;
        i += n;
    }
    assert_eq!(concat_all(dir, "svc")?, numbered(0..1000));
    let mut k = 1;
    while rotated(dir, "svc", k).exists() {
        let bytes = read(&rotated(dir, "svc", k))?;
        assert!(
            bytes.len() as u64 <= max,
            "file {k} has {} bytes",
            bytes.len()
        );
        assert!(bytes.starts_with(b"line "), "file {k} starts mid-line");
        assert!(bytes.ends_with(b"\n"), "file {k} ends mid-line");
        k += 1;
    }
    assert!(k > 100, "only {k} rotations");
    Ok(())
}

#[test]
fn rotates_at_a_newline_that_fits() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "a", 6, 2)?;
    log.write(b"aaa\nbbbb\n")?;
    assert_eq!(read(&rotated(dir, "a", 1))?, b"aaa\n");
    assert_eq!(read(&dir.join("a.log"))?, b"bbbb\n");
    // "cc" does not fit after "bbbb\n" and has no newline: it starts the
    // next file rather than being split.
    log.write(b"cc")?;
    assert_eq!(read(&rotated(dir, "a", 1))?, b"bbbb\n");
    assert_eq!(read(&dir.join("a.log"))?, b"cc");
    Ok(())
}

#[test]
fn a_line_longer_than_max_is_split_without_loss() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "long", 10, 100)?;
    let line: Vec<u8> = (0..95u8).map(|i| b'a' + i % 26).chain([b'\n']).collect();
    log.write(b"x\n")?;
    log.write(&line)?;
    log.write(b"y\n")?;
    let mut expected = b"x\n".to_vec();
    expected.extend(&line);
    expected.extend(b"y\n");
    assert_eq!(concat_all(dir, "long")?, expected);
    for k in 1..100 {
        let p = rotated(dir, "long", k);
        if p.exists() {
            assert!(read(&p)?.len() <= 10);
        }
    }
    Ok(())
}

#[test]
fn reopening_appends_and_counts_the_existing_size() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    {
        let mut log = RotatingLog::open(dir, "r", 30, 3)?;
        log.write(b"first run\n")?;
    }
    let mut log = RotatingLog::open(dir, "r", 30, 3)?;
    log.write(b"second run\n")?;
    assert_eq!(read(&dir.join("r.log"))?, b"first run\nsecond run\n");
    assert!(!rotated(dir, "r", 1).exists());
    // 21 bytes there: 10 more would pass 30, so this rotates.
    log.write(b"third run\n")?;
    assert_eq!(read(&rotated(dir, "r", 1))?, b"first run\nsecond run\n");
    assert_eq!(read(&dir.join("r.log"))?, b"third run\n");
    Ok(())
}

#[test]
fn reopening_with_a_smaller_keep_drops_the_extra_files() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "k", 10, 5)?;
    log.write(&numbered(0..10))?;
    drop(log);
    assert_eq!(count_files(dir, "k")?, 5);
    let mut log = RotatingLog::open(dir, "k", 10, 2)?;
    assert_eq!(count_files(dir, "k")?, 2);
    log.write(&numbered(10..12))?;
    assert_eq!(count_files(dir, "k")?, 2);
    assert_eq!(concat_all(dir, "k")?, numbered(10..12));
    Ok(())
}

#[test]
fn keep_one_truncates_and_restarts() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "one", 100, 1)?;
    for i in 0..1000 {
        log.write(format!("line {i:04}\n").as_bytes())?;
    }
    assert_eq!(count_files(dir, "one")?, 1);
    assert_eq!(read(&dir.join("one.log"))?, numbered(990..1000));
    Ok(())
}

#[test]
fn marker_lines_start_on_a_line_of_their_own() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "m", 1000, 2)?;
    log.write_marker("started pid 123")?;
    log.write(b"partial")?;
    log.write_marker("ended: exit 1")?;
    drop(log);
    // The state survives a reopen: the file ends with a newline now.
    let mut log = RotatingLog::open(dir, "m", 1000, 2)?;
    log.write_marker("started pid 124")?;
    assert_eq!(
        read(&dir.join("m.log"))?,
        b"--- sc: started pid 123 ---\npartial\n--- sc: ended: exit 1 ---\n\
          --- sc: started pid 124 ---\n"
    );
    Ok(())
}

#[test]
fn bad_arguments_are_refused() {
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => panic!("tempdir: {e}"),
    };
    for name in ["", ".", "..", "a/b"] {
        let err = RotatingLog::open(tmp.path(), name, 10, 1).err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput),
            "{name:?}"
        );
    }
    let err = RotatingLog::open(tmp.path(), "x", 0, 1).err();
    assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::InvalidInput));
    let err = RotatingLog::open(tmp.path(), "x", 10, 0).err();
    assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::InvalidInput));
}

/// The last `n` lines of `bytes` the slow, obvious way.
fn last_lines(bytes: &[u8], n: usize) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let start = lines.len().saturating_sub(n);
    lines.drain(..start);
    lines.concat()
}

#[test]
fn tail_across_a_rotation_boundary() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let all = numbered(0..1000);
    let mut log = RotatingLog::open(dir, "t", 100, 5)?;
    log.write(&numbered(0..995))?;
    log.write(&numbered(995..1000))?;
    // web.log holds 990..1000; 15 lines reach into .log.1.
    assert_eq!(tail_lines(dir, "t", 15)?, numbered(985..1000));
    assert_eq!(tail_lines(dir, "t", 10)?, numbered(990..1000));
    assert_eq!(tail_lines(dir, "t", 1)?, b"line 0999\n");
    assert_eq!(tail_lines(dir, "t", 35)?, numbered(965..1000));
    // Everything there is: 5 files of 10 lines.
    assert_eq!(tail_lines(dir, "t", 1000)?, numbered(950..1000));
    assert_eq!(tail_lines(dir, "t", 0)?, b"");
    assert_eq!(concat_all(dir, "t")?, last_lines(&all, 50));
    Ok(())
}

#[test]
fn tail_of_more_lines_than_there_are() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    assert_eq!(tail_lines(dir, "none", 10)?, b"");
    assert_eq!(tail_lines(dir.join("no-such-dir"), "none", 10)?, b"");
    let mut log = RotatingLog::open(dir, "few", 1000, 3)?;
    log.write(b"a\nb\nc")?;
    assert_eq!(tail_lines(dir, "few", 100)?, b"a\nb\nc");
    // A last line without a newline counts as a line.
    assert_eq!(tail_lines(dir, "few", 1)?, b"c");
    assert_eq!(tail_lines(dir, "few", 2)?, b"b\nc");
    log.write(b"\n\n")?;
    assert_eq!(tail_lines(dir, "few", 1)?, b"\n");
    assert_eq!(tail_lines(dir, "few", 2)?, b"c\n\n");
    // Only rotated files, no current one.
    let mut log = RotatingLog::open(dir, "rot", 4, 3)?;
    log.write(b"1\n2\n3\n")?;
    fs::remove_file(dir.join("rot.log"))?;
    assert_eq!(tail_lines(dir, "rot", 10)?, b"1\n2\n");
    Ok(())
}

#[test]
fn tail_of_big_files_reads_blocks_backwards() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    // Lines of varying length over several blocks and two files.
    let mut all = Vec::new();
    let mut rng = Lcg(42);
    for i in 0..20_000 {
        let len = rng.next(60);
        all.extend(format!("{i} {}\n", "x".repeat(len)).into_bytes());
    }
    let mut log = RotatingLog::open(dir, "big", 400_000, 10)?;
    log.write(&all)?;
    assert!(rotated(dir, "big", 1).exists());
    for n in [1, 7, 1000, 5_000, 9_999, 10_000, 19_999, 20_000, 50_000] {
        assert_eq!(tail_lines(dir, "big", n)?, last_lines(&all, n), "n = {n}");
    }
    Ok(())
}

/// Collect from the follower until `want` bytes came (or time runs out).
async fn collect(f: &mut LogFollower, want: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < want {
        match tokio::time::timeout(Duration::from_secs(10), f.next_chunk()).await {
            Ok(chunk) => {
                let chunk = chunk?;
                assert!(!chunk.is_empty());
                got.extend(chunk);
            }
            Err(_) => panic!(
                "timed out with {} of {want} bytes: {:?}",
                got.len(),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    Ok(got)
}

#[tokio::test]
async fn follower_sees_appended_bytes() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "f", 1000, 3)?;
    log.write(b"before\n")?;
    let mut f = LogFollower::new(dir, "f")?;
    f.set_poll_interval(Duration::from_millis(5));
    log.write(b"after 1\n")?;
    assert_eq!(collect(&mut f, 8).await?, b"after 1\n");
    log.write(b"after 2\n")?;
    log.write(b"after 3\n")?;
    assert_eq!(collect(&mut f, 16).await?, b"after 2\nafter 3\n");
    // Nothing new: it waits.
    let waited = tokio::time::timeout(Duration::from_millis(50), f.next_chunk()).await;
    assert!(waited.is_err());
    Ok(())
}

#[tokio::test]
async fn follower_continues_across_a_rotation() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "f", 20, 3)?;
    log.write(b"old\n")?;
    let mut f = LogFollower::new(dir, "f")?;
    f.set_poll_interval(Duration::from_millis(5));
    // Written to the old file, then rotated away before the follower looks,
    // then more in the new file and the one after it.
    let more = numbered(0..4);
    log.write(&more)?;
    assert!(rotated(dir, "f", 2).exists());
    assert_eq!(collect(&mut f, more.len()).await?, more);
    Ok(())
}

#[tokio::test]
async fn follower_keeps_up_with_a_concurrent_writer() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    let mut log = RotatingLog::open(&dir, "c", 256, 1000)?;
    log.write(b"ignored\n")?;
    let mut f = LogFollower::new(&dir, "c")?;
    f.set_poll_interval(Duration::from_millis(3));
    let expected = numbered(0..3000);
    let to_write = expected.clone();
    let writer = std::thread::spawn(move || -> io::Result<()> {
        let mut rng = Lcg(3);
        let mut rest = &to_write[..];
        while !rest.is_empty() {
            let take = (1 + rng.next(50)).min(rest.len());
            log.write(&rest[..take])?;
            rest = &rest[take..];
            if rng.next(20) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    });
    let got = collect(&mut f, expected.len()).await?;
    match writer.join() {
        Ok(r) => r?,
        Err(_) => panic!("writer panicked"),
    }
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes lost or reordered");
    Ok(())
}

#[tokio::test]
async fn follower_with_keep_one_reads_the_end_of_the_removed_file() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "one", 20, 1)?;
    log.write(b"start\n")?;
    let mut f = LogFollower::new(dir, "one")?;
    f.set_poll_interval(Duration::from_millis(5));
    log.write(b"tail of old\n")?;
    log.write(b"new file\n")?;
    assert_eq!(count_files(dir, "one")?, 1);
    assert_eq!(read(&dir.join("one.log"))?, b"new file\n");
    assert_eq!(collect(&mut f, 21).await?, b"tail of old\nnew file\n");
    Ok(())
}

#[tokio::test]
async fn follower_waits_for_the_file_and_handles_truncation() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut f = LogFollower::new(dir, "late")?;
    f.set_poll_interval(Duration::from_millis(5));
    let waited = tokio::time::timeout(Duration::from_millis(30), f.next_chunk()).await;
    assert!(waited.is_err());
    let mut log = RotatingLog::open(dir, "late", 1000, 2)?;
    log.write(b"hello\n")?;
    assert_eq!(collect(&mut f, 6).await?, b"hello\n");
    // Someone truncates it in place: read from the start again.
    OpenOptions::new()
        .write(true)
        .open(dir.join("late.log"))?
        .set_len(0)?;
    let mut log = RotatingLog::open(dir, "late", 1000, 2)?;
    log.write(b"hi\n")?;
    assert_eq!(collect(&mut f, 3).await?, b"hi\n");
    Ok(())
}

#[tokio::test]
async fn tail_and_follow_have_no_gap_and_no_overlap() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "tf", 50, 4)?;
    log.write(&numbered(0..12))?;
    let (tail, mut f) = tail_and_follow(dir, "tf", 3)?;
    f.set_poll_interval(Duration::from_millis(5));
    assert_eq!(tail, numbered(9..12));
    log.write(&numbered(12..20))?;
    assert_eq!(collect(&mut f, 80).await?, numbered(12..20));
    // No file yet: empty tail, then everything from the start.
    let (tail, mut f) = tail_and_follow(dir, "new", 3)?;
    f.set_poll_interval(Duration::from_millis(5));
    assert_eq!(tail, b"");
    RotatingLog::open(dir, "new", 50, 4)?.write(b"first\n")?;
    assert_eq!(collect(&mut f, 6).await?, b"first\n");
    Ok(())
}

#[tokio::test]
async fn follower_catches_up_after_many_rotations_between_polls() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "lag", 50, 100)?;
    let mut f = LogFollower::new(dir, "lag")?;
    f.set_poll_interval(Duration::from_millis(5));
    // 40 rotations before the follower first looks.
    let all = numbered(0..200);
    log.write(&all)?;
    assert!(rotated(dir, "lag", 39).exists());
    assert_eq!(collect(&mut f, all.len()).await?, all);
    Ok(())
}

#[tokio::test]
async fn follower_whose_file_was_dropped_goes_on_from_the_oldest_kept() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "drop", 50, 3)?;
    log.write(b"first\n")?;
    let mut f = LogFollower::new(dir, "drop")?;
    f.set_poll_interval(Duration::from_millis(5));
    // The follower's file (holding "first\n" and line 0000..0003) is
    // rotated out of the 3 kept: what it still holds is read, then the
    // oldest kept file and on.
    log.write(&numbered(0..20))?;
    // Kept: lines 9..13, 14..18 and 19.
    let rest = numbered(9..20);
    assert_eq!(concat_all(dir, "drop")?, rest);
    let mut expected = numbered(0..4);
    expected.extend(&rest);
    assert_eq!(collect(&mut f, expected.len()).await?, expected);
    Ok(())
}

#[test]
fn a_gap_in_the_rotated_files_is_absorbed() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut log = RotatingLog::open(dir, "gap", 10, 4)?;
    log.write(&numbered(0..4))?;
    // As if a rotation had failed half-way: .2 is missing.
    fs::remove_file(rotated(dir, "gap", 2))?;
    log.write(&numbered(4..5))?;
    assert_eq!(read(&dir.join("gap.log"))?, numbered(4..5));
    assert_eq!(read(&rotated(dir, "gap", 1))?, numbered(3..4));
    assert_eq!(read(&rotated(dir, "gap", 2))?, numbered(2..3));
    assert_eq!(read(&rotated(dir, "gap", 3))?, numbered(0..1));
    log.write(&numbered(5..6))?;
    assert_eq!(count_files(dir, "gap")?, 4);
    assert_eq!(concat_all(dir, "gap")?, numbered(2..6));
    assert_eq!(tail_lines(dir, "gap", 10)?, numbered(2..6));
    Ok(())
}
