//! Progress on stderr: plain lines that read well on a serial console and
//! in a log file; a self-updating line, fitted to the terminal's width,
//! only when stderr is a terminal that is not `TERM=dumb`. And what an
//! interrupt (SIGINT, SIGTERM) says before minipull exits.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
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
        Progress { quiet, tty: redraws() }
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
        // In the order shown; on a narrow terminal the parts of highest rank
        // are dropped first (the label and percentage stay).
        let mut parts = vec![
            (4, "minipull: ".to_string()),
            (0, format!("{} {pct:>3}%", crate::error::Clean(&self.label))),
            (2, format!(" {} / {}", human(done), human(self.size))),
            (3, format!(" {}/s", human(self.rate(done)))),
        ];
        if let Some(img) = self.image {
            let now_done = img.done_before + done;
            let fetched = now_done.saturating_sub(img.had);
            let rate = fetched as f64 / img.start.elapsed().as_secs_f64().max(0.001);
            let eta = match rate > 0.0 {
                true => format!("{}s", (img.total.saturating_sub(now_done) as f64 / rate).round() as u64),
                false => "?".to_string(),
            };
            parts.push((5, format!("; image {} / {}", human(now_done), human(img.total))));
            parts.push((1, format!(", ETA {eta}")));
        }
        if self.p.tty {
            // One column short of the width: a line that fills the last
            // column wraps on some terminals, and \r would redraw only half.
            let line = fit(&parts, terminal_width().saturating_sub(1));
            eprint!("\r\x1b[K{line}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{}", fit(&parts, usize::MAX));
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
        self.p.note(format!(
            "{} done: {} downloaded in {}s ({}/s)",
            self.label,
            human(downloaded),
            seconds(self.start.elapsed(), 1),
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

/// `1 layer`, `2 layers`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1.5 MiB`-style sizes.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 1u64;
    let mut u = 0;
    while bytes / unit >= 1024 && u < UNITS.len() - 1 {
        unit *= 1024;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{} {}", fixed(bytes.into(), unit.into(), 1), UNITS[u])
    }
}

/// `num / den` rounded to `places` decimals (at most 3), written without
/// floating point formatting: core's float printing costs 7 KB of binary.
pub fn fixed(num: u128, den: u128, places: u32) -> String {
    let places = places.min(3);
    let scale = 10u128.pow(places);
    let v = (num * scale + den / 2) / den.max(1);
    match places {
        0 => format!("{v}"),
        _ => format!("{}.{:0w$}", v / scale, v % scale, w = places as usize),
    }
}

/// A duration in seconds with `places` decimals: `1.5`.
pub fn seconds(d: std::time::Duration, places: u32) -> String {
    fixed(d.as_micros(), 1_000_000, places)
}

/// Whether progress redraws one line: stderr is a terminal that can.
fn redraws() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The columns of the terminal on stderr; 80 when it does not say.
fn terminal_width() -> usize {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we own.
    match unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) } {
        0 if ws.ws_col > 0 => ws.ws_col as usize,
        _ => 80,
    }
}

/// The parts, in order, without those of highest rank until the line fits
/// `width` characters; cut at `width` when even the first does not.
fn fit(parts: &[(u8, String)], width: usize) -> String {
    let mut keep: Vec<&(u8, String)> = parts.iter().collect();
    let len = |k: &[&(u8, String)]| k.iter().map(|p| p.1.chars().count()).sum::<usize>();
    while len(&keep) > width && keep.len() > 1 {
        let worst = (0..keep.len()).max_by_key(|&i| keep[i].0).unwrap_or(0);
        keep.remove(worst);
    }
    keep.iter().flat_map(|p| p.1.chars()).take(width).collect()
}

/// The line an interrupt prints, set by [`exit_on_interrupt`].
static ON_INTERRUPT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
/// Set once the result may no longer be abandoned (a new root is being
/// swapped in): from then on a signal is only noted, and the run's own
/// outcome and exit code stand.
static DEFERRED: AtomicBool = AtomicBool::new(false);

extern "C" fn interrupted(sig: libc::c_int) {
    if DEFERRED.load(Ordering::SeqCst) {
        return;
    }
    // Only async-signal-safe calls: the line was formatted beforehand.
    // Ending here leaves what a power cut would, which the next run resumes
    // from (partial blobs, the staging tree beside ROOTFS).
    if let Some(line) = ON_INTERRUPT.get() {
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is
        // never changed once set.
        unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    }
    unsafe { libc::_exit(128 + sig) };
}

/// On SIGINT or SIGTERM, say `kept` (what stays, and that the same command
/// resumes) in one line on stderr and exit 130 or 143.
pub fn exit_on_interrupt(kept: &str) {
    // A drawn progress line is cleared first; a dumb terminal gets a new line.
    let start = match (redraws(), std::io::stderr().is_terminal()) {
        (true, _) => "\r\x1b[K",
        (false, true) => "\n",
        (false, false) => "",
    };
    let line = format!("{start}minipull: interrupted: {}\n", crate::error::Clean(kept));
    if ON_INTERRUPT.set(line.into_bytes()).is_err() {
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with an empty mask and our handler;
        // SA_RESTART, so a signal deferred by defer_interrupts interrupts no
        // system call of the run.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = interrupted as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// From now on SIGINT and SIGTERM no longer end the run (see [`DEFERRED`]).
pub fn defer_interrupts() {
    DEFERRED.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    #[test]
    fn fit_drops_parts_by_rank() {
        let parts = vec![(0, "ab 5%".to_string()), (2, " 1/2".into()), (1, ", ETA 3s".into())];
        assert_eq!(super::fit(&parts, 80), "ab 5% 1/2, ETA 3s");
        assert_eq!(super::fit(&parts, 14), "ab 5%, ETA 3s");
        assert_eq!(super::fit(&parts, 6), "ab 5%");
        assert_eq!(super::fit(&parts, 3), "ab ");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(super::human(0), "0 B");
        assert_eq!(super::human(1023), "1023 B");
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(super::human(1024 * 1024 - 1), "1024.0 KiB");
    }

    #[test]
    fn fixed_point_decimals() {
        use super::{fixed, seconds};
        assert_eq!(fixed(15, 10, 1), "1.5");
        assert_eq!(fixed(1, 3, 2), "0.33");
        assert_eq!(fixed(2, 3, 2), "0.67");
        assert_eq!(fixed(5400, 3600, 1), "1.5");
        assert_eq!(fixed(7, 2, 0), "4");
        assert_eq!(seconds(std::time::Duration::from_millis(1234), 2), "1.23");
        assert_eq!(seconds(std::time::Duration::from_millis(50), 1), "0.1");
        assert_eq!(seconds(std::time::Duration::ZERO, 2), "0.00");
    }
}
