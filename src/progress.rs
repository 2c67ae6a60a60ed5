//! Progress on stderr: plain lines that read well on a serial console and
//! in a log file; a self-updating line only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Where progress and notes go.
#[derive(Clone, Copy)]
pub struct Progress {
    quiet: bool,
    tty: bool,
}

const TICK: Duration = Duration::from_secs(1);
/// Blobs smaller than this get only their start and end lines.
const QUIET_BELOW: u64 = 4 * 1024 * 1024;

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// An informational line, silenced by `--quiet`.
    pub fn note(&self, msg: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("minipull: {}", crate::error::Clean(&msg.to_string()));
        }
    }

    /// A line that matters even with `--quiet`: a fallback, a risk taken.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        eprintln!("minipull: warning: {}", crate::error::Clean(&msg.to_string()));
    }

    /// Start reporting one blob download.
    pub fn blob(&self, label: String, size: u64) -> BlobProgress {
        let now = Instant::now();
        self.note(format!("{label} ({}) downloading", human(size)));
        BlobProgress {
            p: *self,
            label,
            size,
            start: now,
            last: now,
            done_at_start: 0,
            image: None,
        }
    }
}

/// Where a whole image stands: its total bytes (known once its manifests
/// are read), the bytes already done before the current blob, and when this
/// run started downloading, for the periodic line's image total and ETA.
#[derive(Clone, Copy, Debug)]
pub struct ImageProgress {
    pub total: u64,
    pub done_before: u64,
    /// Bytes that were already on disk when the run started (not counted in the rate).
    pub had: u64,
    pub start: Instant,
}

/// Progress of one blob.
pub struct BlobProgress {
    p: Progress,
    label: String,
    size: u64,
    start: Instant,
    last: Instant,
    done_at_start: u64,
    image: Option<ImageProgress>,
}

impl BlobProgress {
    /// Show the whole image's progress and ETA on the periodic line too.
    pub fn in_image(mut self, image: ImageProgress) -> BlobProgress {
        self.image = Some(image);
        self
    }

    /// Bytes already on disk when this run started (a resumed partial).
    pub fn resumed_from(&mut self, have: u64) {
        self.done_at_start = have;
        if have > 0 {
            self.p.note(format!(
                "{} resuming at {} of {}",
                self.label,
                human(have),
                human(self.size)
            ));
        }
    }

    /// Report that `done` bytes of the blob are on disk; prints at most once a second.
    pub fn update(&mut self, done: u64) {
        if self.p.quiet || self.size < QUIET_BELOW {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.last) < TICK {
            return;
        }
        self.last = now;
        let pct = done.saturating_mul(100) / self.size.max(1);
        let mut line = format!(
            "{} {:>3}% {} / {} {}/s",
            self.label,
            pct,
            human(done),
            human(self.size),
            human(self.rate(done))
        );
        if let Some(img) = self.image {
            let now_done = img.done_before + done;
            let fetched = now_done.saturating_sub(img.had);
            let rate = fetched as f64 / img.start.elapsed().as_secs_f64().max(0.001);
            let eta = match rate > 0.0 {
                true => format!("{:.0}s", img.total.saturating_sub(now_done) as f64 / rate),
                false => "?".to_string(),
            };
            line += &format!("; image {} / {}, ETA {eta}", human(now_done), human(img.total));
        }
        if self.p.tty {
            eprint!("\r\x1b[K{line}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }

    /// A line saying why the download is being resumed.
    pub fn retrying(&self, why: impl std::fmt::Display) {
        self.clear_line();
        self.p.note(format!("{} {why}", self.label));
    }

    /// The blob is complete and verified.
    pub fn finish(&self, downloaded: u64) {
        self.clear_line();
        let secs = self.start.elapsed().as_secs_f64();
        self.p.note(format!(
            "{} done: {} downloaded in {:.1}s ({}/s)",
            self.label,
            human(downloaded),
            secs,
            human(self.rate(self.done_at_start + downloaded))
        ));
    }

    fn rate(&self, done: u64) -> u64 {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        (done.saturating_sub(self.done_at_start) as f64 / secs) as u64
    }

    fn clear_line(&self) {
        if self.p.tty && !self.p.quiet && self.size >= QUIET_BELOW {
            eprint!("\r\x1b[K");
        }
    }
}

/// `1.5 MiB`-style sizes.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human(0), "0 B");
        assert_eq!(super::human(1023), "1023 B");
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
