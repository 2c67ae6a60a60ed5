//! `--limit-rate` caps what crosses the wire, from the first second: a relay
//! of our own between minipull and the real registry counts, second by
//! second, the bytes it hands to minipull's connection, and every 5-second
//! window of the download, the first included, stays within 10% of the rate.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP relay: accepts on a port it prints, forwards to `127.0.0.1:TARGET`,
/// and logs `CONN TIME BYTES` for every send towards the client, and
/// `W CONN SCALE` for the window scale each client announced. Its own send
/// buffer is small, so a byte counted is a byte on its way on the wire, not
/// one parked in the relay's kernel buffer.
const RELAY: &str = r#"
import selectors, socket, sys, time
target, log = int(sys.argv[1]), open(sys.argv[2], "w", buffering=1)
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(16)
print(ls.getsockname()[1], flush=True)
sel = selectors.DefaultSelector(); sel.register(ls, selectors.EVENT_READ, None)
pairs, pending, n, fresh = {}, {}, 0, set()
def close(s):
    for x in (s, pairs.pop(s, None)):
        if x is not None:
            try: sel.unregister(x)
            except Exception: pass
            x.close(); pairs.pop(x, None); pending.pop(x, None)
while True:
    for key, ev in sel.select():
        s = key.fileobj
        if s is ls:
            c, _ = ls.accept(); n += 1
            c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
            # The window scale the client announced in its SYN (tcp_info's
            # tcpi_snd_wscale): fixed by its receive buffer before connect.
            log.write("W %d %d\n" % (n, c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[6] & 15))
            u = socket.create_connection(("127.0.0.1", target))
            pairs[c], pairs[u] = u, c; fresh.add(c)
            sel.register(c, selectors.EVENT_READ, ("c", n)); sel.register(u, selectors.EVENT_READ, ("u", n))
            continue
        side, conn = key.data
        if side == "c":
            d = s.recv(65536)
            if not d: close(s); continue
            # As an HTTP proxy: a CONNECT (to wherever) reaches TARGET.
            if s in fresh:
                fresh.discard(s)
                if d.startswith(b"CONNECT ") and b"\r\n\r\n" in d:
                    d = d.split(b"\r\n\r\n", 1)[1]
                    s.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    if not d: continue
            pairs[s].sendall(d)
        elif side == "u":
            d = s.recv(16384)
            if not d: close(s); continue
            c = pairs[s]; view = memoryview(d)
            while view:
                k = c.send(view)
                log.write("%d %.4f %d\n" % (conn, time.monotonic(), k)); view = view[k:]
"#;

/// `W CONN SCALE` lines: the window scale each connection's client announced.
fn window_scales(log: &str) -> std::collections::BTreeMap<u32, u32> {
    log.lines()
        .filter_map(|l| l.strip_prefix("W "))
        .map(|l| {
            let (c, s) = l.split_once(' ').unwrap();
            (c.parse().unwrap(), s.parse().unwrap())
        })
        .collect()
}

/// The relay process, ended when dropped (a failed assertion included).
struct Relay(std::process::Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the relay towards `target`; returns it and its port.
fn relay(target: u16, log: &std::path::Path) -> (Relay, u16) {
    let mut relay = Command::new("python3")
        .args(["-c", RELAY, &target.to_string(), log.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(relay.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    (Relay(relay), port.trim().parse().unwrap())
}

#[test]
fn limit_rate_sizes_the_receive_buffer_of_proxy_connections_too() {
    require("python3");
    let reg = Registry::start(Auth::None);
    reg.push_image(
        "demo/small",
        "1",
        &Image::new("amd64", vec![gz_layer(&[("f", b"small")])]),
    );
    let work = TempDir::new("limit-rate-proxy");
    let log = work.join("relay.log");
    // The relay as an HTTP proxy: plain HTTP requests in absolute form reach the registry.
    let (proxy, port) = relay(reg.port, &log);
    let proxy_url = format!("http://127.0.0.1:{port}");
    let pull = |extra: &[&str], out: &str| {
        let mut a = vec!["--plain-http", "-q"];
        a.extend_from_slice(extra);
        let r = format!("{}/demo/small:1", reg.host);
        let out = work.join(out);
        minipull_env(
            &[a, vec![r.as_str(), out.to_str().unwrap()]].concat(),
            None,
            &[("HTTP_PROXY", proxy_url.as_str()), ("NO_PROXY", "")],
        )
    };
    let o = pull(&["--limit-rate", "2M"], "a");
    assert_exit(&o, 0);
    let capped = window_scales(&std::fs::read_to_string(&log).unwrap());
    // Without a cap, the kernel's own sizing (the same proxy): a larger scale.
    let o = pull(&[], "b");
    assert_exit(&o, 0);
    let all = window_scales(&std::fs::read_to_string(&log).unwrap());
    drop(proxy);
    assert!(!capped.is_empty(), "the pull did not go through the proxy");
    assert!(capped.values().all(|s| *s <= 5), "{capped:?}");
    let free: Vec<u32> = all
        .iter()
        .filter(|(c, _)| !capped.contains_key(c))
        .map(|(_, s)| *s)
        .collect();
    assert!(
        !free.is_empty() && free.iter().all(|s| s > capped.values().max().unwrap()),
        "{all:?}"
    );
}

#[test]
fn limit_rate_holds_on_the_wire_in_every_five_second_window() {
    require("python3");
    let reg = Registry::start(Auth::None);
    // ~20 MB that nothing compresses, in one layer.
    let blob = noise(20_000_000, 26);
    let layer = Layer {
        media_type: OCI_LAYER_TAR,
        tar: blob.clone(),
        blob,
    };
    reg.push_image("demo/big", "1", &Image::new("amd64", vec![layer]));
    let work = TempDir::new("limit-rate");
    let log = work.join("relay.log");
    let (relay, port) = relay(reg.port, &log);

    let rate = 2u64 << 20;
    let started = Instant::now();
    let o = minipull_env(
        &[
            "--plain-http",
            "-q",
            "--limit-rate",
            "2M",
            &format!("127.0.0.1:{port}/demo/big:1"),
            work.join("out").to_str().unwrap(),
        ],
        None,
        &[],
    );
    let took = started.elapsed();
    drop(relay);
    assert_exit(&o, 0);
    // 20 MB at 2 MiB/s: about 9.5 s, bounded.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(took > Duration::from_secs(8), "took {took:?}: the cap did not hold");

    // The connection that carried the blob, second by second from its first byte.
    let text = std::fs::read_to_string(&log).unwrap();
    let scales = window_scales(&text);
    let events: Vec<(u32, f64, u64)> = text
        .lines()
        .filter(|l| !l.starts_with('W'))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let mut per_conn = std::collections::BTreeMap::<u32, u64>::new();
    for (c, _, n) in &events {
        *per_conn.entry(*c).or_default() += n;
    }
    let (&conn, &total) = per_conn.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(total >= 20_000_000, "{per_conn:?}");
    // The receive buffer was sized before the handshake: a window scale for
    // a buffer of a fraction of a second at 2 MiB/s (autotuning up to
    // tcp_rmem's maximum, tens of MB, announces a scale of 9 or more).
    assert!(scales.values().all(|s| *s <= 5), "window scales {scales:?}");
    let mine: Vec<(f64, u64)> = events.iter().filter(|e| e.0 == conn).map(|e| (e.1, e.2)).collect();
    let (t0, t_end) = (mine[0].0, mine[mine.len() - 1].0);
    let seconds = (t_end - t0).floor() as usize;
    let mut buckets = vec![0u64; seconds + 1];
    for (t, n) in &mine {
        buckets[((t - t0).floor() as usize).min(seconds)] += n;
    }
    // Every whole 5-second window inside the transfer, the first included.
    let windows: Vec<f64> = (0..seconds.saturating_sub(4))
        .map(|k| buckets[k..k + 5].iter().sum::<u64>() as f64 / 5.0)
        .collect();
    eprintln!("bytes a second: {buckets:?}");
    assert!(windows.len() >= 4, "{buckets:?}");
    for (k, w) in windows.iter().enumerate() {
        let ratio = w / rate as f64;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "window {k}..{} s carried {:.3} MiB/s ({ratio:.3} of the rate); per second: {buckets:?}",
            k + 5,
            w / (1 << 20) as f64
        );
    }
}
