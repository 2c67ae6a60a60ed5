//! Small servers the access tests need besides the real registry: a token
//! server in the style of Docker Hub's (JWTs signed with a key the registry
//! trusts) and an HTTP CONNECT proxy that counts its tunnels. Both run on
//! 127.0.0.1 and stop when dropped.

use super::fault::read_head;
use super::*;
use std::collections::HashMap;
use std::io::BufReader;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Accept connections until dropped; `handle` runs on a thread per connection.
struct Listener {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (sp, handle) = (stop.clone(), Arc::new(handle));
        std::thread::spawn(move || {
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let _ = sock.set_nonblocking(false);
                        let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
                        let h = handle.clone();
                        std::thread::spawn(move || h(sock));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Listener { port, stop }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One HTTP request as the token server saw it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: String,
}

/// Issues registry tokens: repositories under `public/` to anyone, under
/// `private/` to `user:password` by Basic auth or to the refresh token.
pub struct TokenServer {
    pub port: u16,
    pub log: Arc<Mutex<Vec<TokenRequest>>>,
    _listener: Listener,
    /// The certificate the registry must trust (`rootcertbundle`).
    pub cert: PathBuf,
}

pub const TOKEN_SERVICE: &str = "test-registry";
pub const TOKEN_ISSUER: &str = "minipull-test-issuer";
pub const REFRESH_TOKEN: &str = "refresh-token-for-alice";

impl TokenServer {
    pub fn start(dir: &Path, user: &'static str, password: &'static str) -> TokenServer {
        require("openssl");
        let (key, cert) = (dir.join("token.key"), dir.join("token.pem"));
        run_ok(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
                "-days",
                "2",
                "-subj",
                "/CN=token signer",
            ],
        );
        let der = Command::new("openssl")
            .args(["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"])
            .output()
            .unwrap()
            .stdout;
        let x5c = base64_pub(&der);
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let basic = format!("Basic {}", base64_pub(format!("{user}:{password}").as_bytes()));
        let listener = Listener::start(move |sock| {
            let _ = serve_token(sock, &l, &basic, &key, &x5c);
        });
        TokenServer {
            port: listener.port,
            log,
            _listener: listener,
            cert,
        }
    }

    /// The registry's `auth:` section for this server.
    pub fn auth_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.port,
            self.cert.display()
        )
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().unwrap().clone()
    }
}

fn serve_token(
    sock: TcpStream,
    log: &Mutex<Vec<TokenRequest>>,
    basic: &str,
    key: &Path,
    x5c: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(sock.try_clone()?);
    let (line, headers) = read_head(&mut reader)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let query = target.split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default();
    let authorization = headers.get("authorization").cloned();
    log.lock().unwrap().push(TokenRequest {
        method: method.clone(),
        query: query.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    let params: HashMap<String, String> = (if method == "POST" { &body } else { &query })
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), url_decode(v)))
        .collect();
    let scope = params.get("scope").cloned().unwrap_or_default();
    let repo = scope.split(':').nth(1).unwrap_or("").to_string();
    let (status, answer) = if method == "POST" {
        if params.get("grant_type").map(String::as_str) == Some("refresh_token")
            && params.get("refresh_token").map(String::as_str) == Some(REFRESH_TOKEN)
        {
            let jwt = sign_jwt(key, x5c, &repo, true);
            (
                200,
                format!(r#"{{"access_token":"{jwt}","expires_in":300,"refresh_token":"{REFRESH_TOKEN}"}}"#),
            )
        } else {
            (400, r#"{"error":"invalid_grant"}"#.to_string())
        }
    } else {
        match authorization.as_deref() {
            Some(a) if a != basic => (401, r#"{"details":"incorrect username or password"}"#.to_string()),
            a => {
                let allowed = repo.starts_with("public/") || a.is_some();
                let jwt = sign_jwt(key, x5c, &repo, allowed);
                (200, format!(r#"{{"token":"{jwt}","expires_in":300}}"#))
            }
        }
    };
    let mut out = sock;
    write!(
        out,
        "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
        answer.len()
    )
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn b64url(b: &[u8]) -> String {
    base64_pub(b)
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string()
}

/// An RS256 JWT the registry accepts: signed by the openssl CLI with the key
/// whose certificate is in the registry's root bundle, carried in `x5c`.
fn sign_jwt(key: &Path, x5c: &str, repo: &str, allowed: bool) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let access = if allowed && !repo.is_empty() {
        serde_json::json!([{"type": "repository", "name": repo, "actions": ["pull"]}])
    } else {
        serde_json::json!([])
    };
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": "test", "aud": TOKEN_SERVICE, "exp": now + 300, "nbf": now - 10,
        "iat": now, "jti": format!("{now}-{repo}"), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", key.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(signing_input.as_bytes()).unwrap();
    let sig = child.wait_with_output().unwrap().stdout;
    format!("{signing_input}.{}", b64url(&sig))
}

/// An HTTP CONNECT proxy that counts the tunnels it opened.
pub struct ConnectProxy {
    pub port: u16,
    pub tunnels: Arc<AtomicUsize>,
    _listener: Listener,
}

impl ConnectProxy {
    pub fn start() -> ConnectProxy {
        let tunnels = Arc::new(AtomicUsize::new(0));
        let t = tunnels.clone();
        let listener = Listener::start(move |sock| {
            let _ = tunnel(sock, &t);
        });
        ConnectProxy {
            port: listener.port,
            tunnels,
            _listener: listener,
        }
    }

    pub fn count(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

fn tunnel(sock: TcpStream, count: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(sock.try_clone()?);
    let (line, _) = read_head(&mut reader)?;
    let mut out = sock.try_clone()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // Only tunnels to 127.0.0.1: the tests never reach further.
    if method != "CONNECT" || !target.starts_with("127.0.0.1:") {
        return out.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    }
    let upstream = TcpStream::connect(target)?;
    count.fetch_add(1, Ordering::SeqCst);
    out.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let (mut up_r, mut up_w) = (upstream.try_clone()?, upstream);
    let mut down_w = out;
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut down_w);
        let _ = down_w.shutdown(std::net::Shutdown::Write);
    });
    // Bytes the reader buffered past the head belong to the tunnel.
    let buffered = reader.buffer().to_vec();
    up_w.write_all(&buffered)?;
    let mut rest = reader.into_inner();
    let _ = std::io::copy(&mut rest, &mut up_w);
    let _ = up_w.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
    Ok(())
}
