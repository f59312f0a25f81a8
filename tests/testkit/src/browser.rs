//! Headless Chromium driven over the DevTools protocol, for page tests that need a real browser
//! (JavaScript, server-sent events, cookies, forms): `--remote-debugging-pipe` (commands on the
//! child's fd 3, answers and events on its fd 4, each message ended by a NUL byte), one target
//! per [`Tab`], and the handful of commands the tests use: navigate, evaluate, extra headers,
//! screenshot. Blocking; call it from `spawn_blocking` in async tests.

use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Waiters = Arc<Mutex<HashMap<u64, Sender<Value>>>>;

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

pub struct Browser {
    child: Child,
    to_browser: Mutex<std::fs::File>,
    waiters: Waiters,
    next_id: Mutex<u64>,
    _profile: tempfile::TempDir,
}

pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

impl Browser {
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let (cmd_read, cmd_write) = pipe();
        let (out_read, out_write) = pipe();
        let (r, w) = (cmd_read.as_raw_fd(), out_write.as_raw_fd());
        let mut command = Command::new(chromium());
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. Both ends
        // are first copied above 10, so neither is clobbered by the other's dup2, and the copies
        // on 3 and 4 lose the close-on-exec flag the pipe was made with.
        unsafe {
            command.pre_exec(move || {
                let (r2, w2) = (
                    libc::fcntl(r, libc::F_DUPFD, 10),
                    libc::fcntl(w, libc::F_DUPFD, 10),
                );
                if r2 < 0 || w2 < 0 || libc::dup2(r2, 3) < 0 || libc::dup2(w2, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {} (scripts/install-test-deps.sh installs it): {e}",
                chromium()
            )
        });
        drop(cmd_read);
        drop(out_write);
        let waiters: Waiters = Arc::default();
        let w2 = waiters.clone();
        let mut reader = std::fs::File::from(out_read);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1]) else {
                        continue;
                    };
                    if let Some(id) = v.get("id").and_then(Value::as_u64) {
                        if let Some(tx) = w2.lock().unwrap().remove(&id) {
                            let _ = tx.send(v);
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to_browser: Mutex::new(std::fs::File::from(cmd_write)),
            waiters,
            next_id: Mutex::new(0),
            _profile: profile,
        }
    }

    /// One command; its `result` (panics on a protocol error or after 30 s).
    pub fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            *n
        };
        let (tx, rx): (Sender<Value>, Receiver<Value>) = channel();
        self.waiters.lock().unwrap().insert(id, tx);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to_browser
            .lock()
            .unwrap()
            .write_all(&bytes)
            .expect("write to the browser");
        let answer = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"));
        if let Some(e) = answer.get("error") {
            panic!("{method}: {e}");
        }
        answer["result"].clone()
    }

    /// A new tab; `isolated` gives it its own cookie jar (another person's browser).
    pub fn tab(&self, isolated: bool) -> Tab<'_> {
        let mut params = json!({"url": "about:blank"});
        if isolated {
            let ctx = self.call(None, "Target.createBrowserContext", json!({}));
            params["browserContextId"] = ctx["browserContextId"].clone();
        }
        let target = self.call(None, "Target.createTarget", params)["targetId"].clone();
        let session = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        )["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        let tab = Tab {
            browser: self,
            session,
        };
        tab.call("Page.enable", json!({}));
        tab.call("Runtime.enable", json!({}));
        tab.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1200, "height": 1400, "deviceScaleFactor": 1, "mobile": false}),
        );
        tab
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Tab<'a> {
    browser: &'a Browser,
    session: String,
}

impl Tab<'_> {
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params)
    }

    /// Evaluate `js` (awaiting a promise) and return its value.
    pub fn eval(&self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{js}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Go to `url` and wait until the document is loaded.
    pub fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_until(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        );
    }

    /// Poll `condition` (a JS expression) every 50 ms until true; panics after `within`.
    pub fn wait_until(&self, condition: &str, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let r = self.call(
                "Runtime.evaluate",
                json!({"expression": format!("!!({condition})"), "returnByValue": true}),
            );
            if r["result"]["value"] == json!(true) {
                return;
            }
            assert!(
                Instant::now() < end,
                "not true within {within:?}: {condition} (at {})",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": "location.href", "returnByValue": true}),
        );
        r["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn text(&self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Headers sent with every request of this tab (e.g. App Service's principal header).
    pub fn extra_headers(&self, headers: Value) {
        self.call("Network.enable", json!({}));
        self.call("Network.setExtraHTTPHeaders", json!({"headers": headers}));
    }

    /// A PNG of the whole page, written to `path`.
    pub fn screenshot(&self, path: &std::path::Path) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("data"))
            .expect("base64 PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}
