//! One blob download: ranged requests that resume where the partial file
//! ends, a running hash, and a retry budget counted in attempts without
//! progress.

use super::*;

impl Client {
    /// Download a blob into `part`, resuming from whatever `part` already
    /// holds, verify it, and leave it fsynced. Returns the bytes fetched
    /// over the network by this call.
    pub fn download_blob(&mut self, digest: &Digest, size: u64, part: &Path, bp: &mut BlobProgress) -> Result<u64> {
        let mut p = Partial::open(part, digest, size)?;
        p.keep_cache = self.opts.keep_written_pages;
        bp.resumed_from(p.have);
        let url = format!("{}/v2/{}/blobs/{}", self.origin, self.repository, digest);
        let what = format!("blob {}", digest.short());
        let mut downloaded = 0u64;
        // A wrong digest or an over-long body gets one more try from zero.
        let mut bad_content = 0;
        // Attempts in a row that brought no new bytes.
        let mut failures = 0u32;
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            if p.have == size {
                let got = p.hasher.clone().finish();
                if got == *digest {
                    p.file.sync_all().map_err(|e| p.write_error(e))?;
                    p.complete = true;
                    resume::Record::remove(p.path);
                    return Ok(downloaded);
                }
                bad_content += 1;
                let e = Error::integrity(format!("{what}: the downloaded content hashes to {got}"));
                if bad_content >= 2 {
                    p.discard();
                    return Err(e.hint("the registry or something between it and us serves corrupt data; try a mirror or another network"));
                }
                bp.retrying("does not match its digest; discarding it and downloading it once more");
                p.restart()?;
                continue;
            }

            let range = (p.have > 0).then(|| format!("bytes={}-", p.have));
            let mut resp = self.get(&what, &url, None, range.as_deref())?;
            // How many bytes of the answer we already hold; None: unusable.
            let skip = match resp.status().as_u16() {
                200 => Some(p.have), // the server ignored Range
                206 => content_range_start(&resp)
                    .filter(|start| *start <= p.have)
                    .map(|start| p.have - start),
                // 416: the server says our range does not exist, so our partial
                // disagrees with it.
                416 => None,
                _ => return Err(self.status_error(&what, &mut resp)),
            };
            let Some(mut skip) = skip else {
                bp.retrying("the server refused our resume range; starting this blob over");
                p.restart()?;
                failures += 1;
                self.check_budget(failures, &what)?;
                continue;
            };

            let mut reader = resp.into_body().into_reader();
            let attempt_start = p.have;
            let mut window_start = Instant::now();
            let mut window_bytes = 0u64;
            let outcome = loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break Attempt::Broken("the connection closed early".into()),
                    Ok(n) => n,
                    Err(e) => break Attempt::Broken(describe_io(&e)),
                };
                let k = skip.min(n as u64) as usize;
                skip -= k as u64;
                downloaded += k as u64; // skipped, but still paid for
                let chunk = &buf[k..n];
                if chunk.is_empty() {
                    continue;
                }
                if p.have + chunk.len() as u64 > size {
                    break Attempt::TooLong;
                }
                p.append(chunk)?;
                self.pace(chunk.len() as u64);
                downloaded += chunk.len() as u64;
                window_bytes += chunk.len() as u64;
                bp.update(p.have);
                if p.have == size {
                    // Read on once to see whether the body ends where the descriptor says.
                    break match reader.read(&mut buf) {
                        Ok(n) if n > 0 => Attempt::TooLong,
                        _ => Attempt::Complete,
                    };
                }
                let elapsed = window_start.elapsed();
                if elapsed >= self.opts.speed_time {
                    let rate = (window_bytes as f64 / elapsed.as_secs_f64()) as u64;
                    if rate < self.opts.speed_limit {
                        break Attempt::Broken(format!(
                            "the transfer is too slow ({}/s for {}s)",
                            human(rate),
                            elapsed.as_secs()
                        ));
                    }
                    window_start = Instant::now();
                    window_bytes = 0;
                }
            };
            match outcome {
                // Verified at the top of the loop.
                Attempt::Complete => {}
                Attempt::TooLong => {
                    bad_content += 1;
                    let e = Error::integrity(format!(
                        "{what}: the registry sent more than the {size} bytes its descriptor says"
                    ));
                    if bad_content >= 2 {
                        p.discard();
                        return Err(e);
                    }
                    bp.retrying("is longer than its descriptor says; discarding it and downloading it once more");
                    p.restart()?;
                }
                Attempt::Broken(why) => {
                    failures = if p.have > attempt_start { 0 } else { failures + 1 };
                    let at = format!("{why} at {} of {}", human(p.have), human(size));
                    self.check_budget(failures, &what).map_err(|e| e.context(&at))?;
                    bp.retrying(format!("{at}; resuming"));
                    self.sleep_backoff(failures, None);
                }
            }
        }
    }

    /// `--limit-rate`: sleep as long as the bytes read so far are ahead of
    /// the cap, single-threaded, by pacing the reads. A schedule fallen more
    /// than a second behind (a retry's wait) starts over, so a pause is
    /// never made up by a burst above the cap.
    fn pace(&mut self, n: u64) {
        let Some(rate) = self.opts.limit_rate else { return };
        let (start, bytes) = self.paced.get_or_insert_with(|| (Instant::now(), 0));
        *bytes += n;
        let due = Duration::from_secs_f64(*bytes as f64 / rate as f64);
        let elapsed = start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        } else if elapsed > due + Duration::from_secs(1) {
            self.paced = Some((Instant::now(), 0));
        }
    }

    pub(super) fn check_budget(&self, failures: u32, what: &str) -> Result<()> {
        if failures > self.opts.retries {
            return Err(Error::network(format!(
                "{what}: gave up after {} without progress",
                crate::progress::count(failures as u64, "attempt", "attempts")
            ))
            .hint("the partial download is kept; run the same command again to resume, or raise --retries"));
        }
        Ok(())
    }
}

/// How one request for a blob ended.
enum Attempt {
    /// The body ended exactly at the descriptor's size.
    Complete,
    /// The body went past the descriptor's size.
    TooLong,
    /// The body broke off (or crawled); the reason, for the user.
    Broken(String),
}

/// A blob being downloaded: the file, how much of it is valid, and the
/// running hash of those bytes.
struct Partial<'a> {
    path: &'a Path,
    file: std::fs::File,
    have: u64,
    hasher: Hasher,
    algorithm: crate::digest::Algorithm,
    /// Where the bytes not yet handed to the kernel for writing start, and
    /// the last two windows handed over (being written back now), oldest first.
    flushed: u64,
    writing: [Option<(u64, u64)>; 2],
    /// False once the filesystem refused sync_file_range: then the final
    /// fsync does it all, as before.
    write_back: bool,
    /// Keep written pages cached (an unpack in this run reads them back).
    keep_cache: bool,
    /// Which prefixes are known good, for a resume after a power cut.
    record: resume::Record,
    /// Where the last prefix was recorded.
    recorded: u64,
    /// Verified and synced, or thrown away: nothing to record on drop.
    complete: bool,
}

/// Write-back window: every 16 MiB of a blob the kernel is asked to start
/// writing what was just written, and the window two before it is waited
/// for and, unless an unpack reads it back, dropped from the page cache: at
/// most four windows (64 MiB) are dirty at a time instead of the whole blob,
/// and the final fsync has little left to do. Waiting for the window just
/// before instead stalled the download on the disk (5-15% slower). The
/// bytes are already hashed; nobody needs them cached during a pull.
const WINDOW: u64 = 16 * 1024 * 1024;

impl<'a> Partial<'a> {
    /// Open `path`, keeping what a previous run left if it can still be
    /// part of a blob of `size` bytes, and re-hash it to restore the state.
    fn open(path: &'a Path, digest: &Digest, size: u64) -> Result<Partial<'a>> {
        let err = |e: std::io::Error| Error::storage(format!("cannot open {}", path.display()), &e);
        // Never through a link planted in its place (refused, exit 7).
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| crate::layout::planted_or(path, e, "cannot open"))?;
        let algorithm = digest.algorithm();
        let mut len = file.metadata().map_err(err)?.len();
        if len > size {
            len = 0;
        }
        // Written in this boot (a kill, not a power cut): every byte is in
        // the page cache, so all of it is good. Otherwise only the prefixes
        // the record vouches for.
        let boot = resume::current_boot();
        let old = resume::Record::read(path);
        let same_boot = boot.is_some() && old.as_ref().is_some_and(|r| r.boot == boot);
        let (have, hasher, prefixes) =
            resume::trusted_prefix(&mut file, Hasher::new(algorithm), len, old, same_boot).map_err(err)?;
        file.set_len(have).map_err(err)?;
        file.seek(SeekFrom::Start(have)).map_err(err)?;
        let record = resume::Record { boot, prefixes };
        // Not synced: after a power cut, losing it loses nothing the data
        // has not lost with it.
        record.write(path, false).map_err(err)?;
        Ok(Partial {
            path,
            file,
            have,
            hasher,
            algorithm,
            flushed: have,
            writing: [None, None],
            write_back: true,
            keep_cache: false,
            record,
            recorded: have,
            complete: false,
        })
    }

    /// Record the prefix held now; `durable`: make the record survive a
    /// power cut (the data up to here has been handed to the disk).
    fn checkpoint(&mut self, durable: bool) {
        self.record.push(self.have, self.hasher.clone().finish());
        self.recorded = self.have;
        // A record that cannot be written costs a longer resume, nothing more.
        let _ = self.record.write(self.path, durable);
    }

    fn write_error(&self, e: std::io::Error) -> Error {
        Error::storage(format!("cannot write {}", self.path.display()), &e)
    }

    fn append(&mut self, chunk: &[u8]) -> Result<()> {
        self.file.write_all(chunk).map_err(|e| self.write_error(e))?;
        self.hasher.update(chunk);
        self.have += chunk.len() as u64;
        if self.have - self.flushed >= WINDOW {
            if self.write_back {
                self.write_back();
            }
            self.flushed = self.have;
            self.checkpoint(true);
        }
        Ok(())
    }

    /// Hand the window just written to the kernel, then wait for the one
    /// two before it and drop its pages. Durability still comes from the fsync
    /// before the blob is named; this only spreads the writing out.
    fn write_back(&mut self) {
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        let (start, len) = (self.flushed, self.have - self.flushed);
        // SAFETY: fd is this open file; sync_file_range takes no pointers.
        let started = unsafe { libc::sync_file_range(fd, start as _, len as _, libc::SYNC_FILE_RANGE_WRITE) } == 0;
        if !started {
            self.write_back = false; // not Linux, or not this filesystem
            return;
        }
        let oldest = self.writing[0].take();
        self.writing = [self.writing[1], Some((start, len))];
        if let Some((ps, pl)) = oldest {
            let wait =
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            // SAFETY: as above.
            let waited = unsafe { libc::sync_file_range(fd, ps as _, pl as _, wait) } == 0;
            if waited && !self.keep_cache {
                // SAFETY: as above; advice only, failure is harmless.
                unsafe { libc::posix_fadvise(fd, ps as _, pl as _, libc::POSIX_FADV_DONTNEED) };
            }
        }
    }

    /// Throw away what we hold and start the blob from zero.
    fn restart(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(|e| self.write_error(e))?;
        self.file.seek(SeekFrom::Start(0)).map_err(|e| self.write_error(e))?;
        self.have = 0;
        self.flushed = 0;
        self.writing = [None, None];
        self.hasher = Hasher::new(self.algorithm);
        self.record.prefixes.clear();
        self.recorded = 0;
        let _ = self.record.write(self.path, false);
        Ok(())
    }

    /// Remove the file: its content is known to be bad.
    fn discard(&mut self) {
        let _ = std::fs::remove_file(self.path);
        resume::Record::remove(self.path);
        self.complete = true;
    }
}

impl Drop for Partial<'_> {
    /// A clean stop (an error, a give-up): sync what we hold and record it,
    /// so even a power cut after we exit keeps the whole partial.
    fn drop(&mut self) {
        if !self.complete && self.have > self.recorded && self.file.sync_data().is_ok() {
            self.checkpoint(true);
        }
    }
}

/// The start offset of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(resp: &Response<Body>) -> Option<u64> {
    let v = resp.headers().get("content-range")?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// What a ranged blob GET answered (for partial pulls).
#[cfg(feature = "delta")]
pub enum Ranged {
    /// 200: the server ignored the Range; this is the whole blob, to be
    /// consumed as the whole-layer download (never asked twice).
    Whole(Box<dyn Read>),
    /// 206: the asked ranges' bytes, one after the other.
    Parts(crate::delta::ranges::Parts<std::io::BufReader<Box<dyn Read>>>),
    /// 400, 416 or 501 to a multi-range request: ask one range at a time.
    Refused,
}

#[cfg(feature = "delta")]
impl Client {
    /// GET `ranges` (`[start, end)`, ascending) of a blob in one request.
    /// Redirects keep the Range and carry no registry credentials (see `send_as`).
    pub fn blob_ranges(&mut self, digest: &Digest, ranges: &[(u64, u64)]) -> Result<Ranged> {
        use crate::delta::ranges::{boundary, content_range, header, Parts};
        let url = format!("{}/v2/{}/blobs/{}", self.origin, self.repository, digest);
        let what = format!("ranges of blob {}", digest.short());
        let mut resp = self.get(&what, &url, None, Some(&header(ranges)))?;
        let head = |resp: &Response<Body>, name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        match resp.status().as_u16() {
            200 => Ok(Ranged::Whole(Box::new(resp.into_body().into_reader()))),
            206 => {
                let (ct, cr) = (head(&resp, "content-type"), head(&resp, "content-range"));
                let body = std::io::BufReader::with_capacity(
                    BUF_SIZE,
                    Box::new(resp.into_body().into_reader()) as Box<dyn Read>,
                );
                if let Some(b) = ct.as_deref().and_then(boundary) {
                    return Ok(Ranged::Parts(Parts::multi(body, &b, ranges.to_vec())));
                }
                let span = cr
                    .as_deref()
                    .and_then(content_range)
                    .ok_or_else(|| Error::network(format!("{what}: HTTP 206 without a usable Content-Range")))?;
                Ok(Ranged::Parts(Parts::single(body, span, ranges.to_vec())))
            }
            400 | 416 | 501 if ranges.len() > 1 => Ok(Ranged::Refused),
            _ => Err(self.status_error(&what, &mut resp)),
        }
    }
}
