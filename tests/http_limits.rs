//! The listener's limits (`HTTP_READ_TIMEOUT_SECS`, `HTTP_MAX_CONNECTIONS`): connections that
//! never finish their headers or their body are closed after the timeout, no more than the cap
//! are served at once, and a normal request still gets its answer meanwhile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use testkit::app::Handler;

const TIMEOUT_SECS: u64 = 1;
const CAP: usize = 100;

/// Open `n` connections that each send `prefix` and then nothing; a thread per connection
/// records when the server closed it. Returns the closing times, in the order they came.
fn hold_half_open(
    port: u16,
    n: usize,
    prefix: &'static [u8],
    start: Instant,
) -> Vec<std::thread::JoinHandle<Option<Duration>>> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(prefix).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf) {
                        // EOF or reset: the server closed it (an error answer may come first).
                        Ok(0) | Err(_) => return Some(start.elapsed()),
                        Ok(_) => continue,
                    }
                }
            })
        })
        .collect()
}

fn closing_times(handles: Vec<std::thread::JoinHandle<Option<Duration>>>) -> Vec<Duration> {
    let mut t: Vec<Duration> = handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("closed"))
        .collect();
    t.sort();
    t
}

#[test]
fn half_open_connections_are_closed_after_the_timeout_and_a_request_still_gets_answered() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = TIMEOUT_SECS.to_string();
    let cap = CAP.to_string();
    let h = Handler::serve(
        dir.path(),
        &[
            ("HTTP_READ_TIMEOUT_SECS", timeout.as_str()),
            ("HTTP_MAX_CONNECTIONS", cap.as_str()),
        ],
    );
    // 150 clients stop in the middle of their headers, 100 never send a byte.
    let start = Instant::now();
    let mut held = hold_half_open(h.port, 150, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", start);
    held.extend(hold_half_open(h.port, 100, b"", start));
    let opened = start.elapsed();
    let asked = Instant::now();
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/api/health", h.base))
        .timeout(Duration::from_secs(15))
        .send()
        .expect("a normal request is answered while half-open connections are held");
    assert_eq!(r.status(), 200);
    let waited = asked.elapsed();
    let times = closing_times(held);
    eprintln!(
        "opened in {opened:?}; closed at {:?} .. {:?}; answered after {waited:?}",
        times[0],
        times[times.len() - 1]
    );
    let last = *times.last().unwrap();
    // 250 connections, 100 at a time, 1 s each: three rounds, never the 40 s of old.
    assert!(last < Duration::from_secs(6), "last closed after {last:?}");
    let first_round = times
        .iter()
        .filter(|t| **t < Duration::from_millis(1700))
        .count();
    assert!(
        first_round <= CAP,
        "{first_round} closed in the first round: more than {CAP} served at once"
    );
    assert!(
        times[0] >= Duration::from_millis(900),
        "closed before the timeout: {:?}",
        times[0]
    );
    assert!(waited < Duration::from_secs(6), "answered after {waited:?}");
}

#[test]
fn a_body_that_stops_coming_is_cut_off_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = TIMEOUT_SECS.to_string();
    // The custom handler reads invocation bodies; same listener as `serve`.
    let h = Handler::custom_handler(dir.path(), &[("HTTP_READ_TIMEOUT_SECS", timeout.as_str())]);
    let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    s.write_all(
        b"POST /SyncTimer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"Data\":",
    )
    .unwrap();
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(TIMEOUT_SECS + 3) && took >= Duration::from_millis(900),
        "connection ended after {took:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || !text.starts_with("HTTP/1.1 200"),
        "a cut-off body is not processed: {text}"
    );
}
